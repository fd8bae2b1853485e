"""Apps for the command-line tests.

``application`` (picked first when APP names only this module) answers by path:
``/`` a greeting, ``/where`` the listening address and the client address, ``/cwd`` the
working directory, ``/sleep?SECONDS`` after logging ``sleeping`` to wsgi.errors,
``/warn`` a line on wsgi.errors, ``/multithread`` wsgi.multithread. ``app`` is a second app
that must *not* be picked when APP is just ``cli_apps``. ``NOT_CALLABLE`` is not an app.
"""

import os
import time

NOT_CALLABLE = 42


def _reply(start_response, body, status="200 OK"):
    body = body.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        return _reply(start_response, "hello from cli_apps.application")
    if path == "/where":
        return _reply(
            start_response,
            " ".join(
                [environ["SERVER_NAME"], environ["SERVER_PORT"], environ.get("REMOTE_ADDR", "")]
            ),
        )
    if path == "/cwd":
        return _reply(start_response, os.getcwd())
    if path == "/sleep":
        errors = environ["wsgi.errors"]
        errors.write("sleeping\n")
        errors.flush()
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
        return _reply(start_response, "slept")
    if path == "/warn":
        errors = environ["wsgi.errors"]
        errors.write("a line for wsgi.errors\n")
        errors.flush()
        return _reply(start_response, "warned")
    if path == "/multithread":
        return _reply(start_response, repr(environ["wsgi.multithread"]))
    return _reply(start_response, "not found: " + path, "404 Not Found")


def app(environ, start_response):
    return _reply(start_response, "this is cli_apps.app, not application")
