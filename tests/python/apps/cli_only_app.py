"""A module with an ``app`` and no ``application``: APP ``cli_only_app`` must pick ``app``."""


def app(environ, start_response):
    body = b"hello from cli_only_app.app"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
