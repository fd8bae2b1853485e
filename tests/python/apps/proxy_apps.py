"""Apps for test_proxy.py: a Flask app that builds URLs with url_for, to check --root-path
and forwarded scheme/host end to end (the environ echo is wsgi_apps:environ_app)."""

from flask import Flask, request, url_for

flask_app = Flask(__name__)


@flask_app.route("/page")
def page():
    return {
        "path": url_for("page"),
        "external": url_for("page", _external=True),
        "script_root": request.script_root,
        "remote_addr": request.remote_addr,
    }
