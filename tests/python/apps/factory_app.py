"""Application factories for ``APP = module:factory(literal args)``."""


def create(greeting="default", n=1, **extra):
    body = f"{greeting}*{n}{''.join(f' {k}={v!r}' for k, v in sorted(extra.items()))}"
    body = body.encode("utf-8")

    def app(environ, start_response):
        start_response(
            "200 OK",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def failing_factory():
    raise RuntimeError("the factory fails on purpose")


def not_an_app_factory():
    return "a str, not an app"
