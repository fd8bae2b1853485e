"""A small Flask application served by tidegate in test_frameworks.py."""

import hashlib
import time

from flask import Flask, Response, jsonify, request, session

app = Flask(__name__)
app.secret_key = "tidegate-test-secret-key"


@app.route("/")
def index():
    return "Hello from Flask"


@app.route("/hello/<name>")
def hello(name):
    return f"Hello, {name}!"


@app.route("/json")
def json_view():
    return jsonify(
        message="hi",
        items=[1, 2, 3],
        unicode="\u00e9\u2603",
        args=request.args.to_dict(flat=False),
    )


@app.route("/form", methods=["POST"])
def form():
    return f"name={request.form['name']} colour={request.form.get('colour', '-')}"


@app.route("/echo-json", methods=["POST"])
def echo_json():
    data = request.get_json()
    return jsonify(received=data, length=request.content_length)


@app.route("/upload", methods=["POST"])
def upload():
    uploaded = request.files["file"]
    data = uploaded.read()
    return jsonify(
        filename=uploaded.filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        note=request.form.get("note"),
    )


@app.route("/stream")
def stream():
    def generate():
        for i in range(5):
            yield f"line {i}\n"
            time.sleep(0.01)

    return Response(generate(), mimetype="text/plain")


@app.route("/session/set/<value>")
def session_set(value):
    session["value"] = value
    return "stored"


@app.route("/session/get")
def session_get():
    return session.get("value", "<nothing>")


@app.route("/fail")
def fail():
    raise RuntimeError("flask view failed")
