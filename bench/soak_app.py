"""The app the soak and slowloris runs serve: one path per kind of request."""


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"chunk %d\n" % i for i in range(20))
    if path == "/error":
        raise RuntimeError("the soak app fails on purpose")
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"x" * 65536]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, World!"]
