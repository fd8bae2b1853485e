"""TLS (HTTP/1.1 over rustls) and HTTP/2 (ALPN h2, cleartext h2c) end to end, with real
clients: Python's ssl/http.client, curl and h2load. Certificates are made at test time with
the openssl command (a test CA, server certificates with PKCS#8, PKCS#1 and SEC1 keys, and
client certificates)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import APPS_DIR, server_env, tidegate_command

APP = "tls_apps:router"

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
needs_h2load = pytest.mark.skipif(
    shutil.which("h2load") is None, reason="h2load (Debian nghttp2-client) not installed"
)
pytestmark = needs_openssl


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=str(cwd), check=True, capture_output=True, timeout=60)


class Pki:
    """A test CA that signs server and client certificates."""

    def __init__(self, root: Path, name: str = "ca"):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca = root / f"{name}.pem"
        self.ca_key = root / f"{name}.key"
        openssl(root, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key.name,
                "-out", self.ca.name, "-days", "2", "-subj", f"/CN=tidegate test {name}",
                # The extensions a CA must carry under VERIFY_X509_STRICT, on by default in
                # Python 3.13's ssl.create_default_context().
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, key_form: str = "pkcs8", client: bool = False):
        key, cert = self.root / f"{name}.key", self.root / f"{name}.pem"
        if key_form == "pkcs8":
            openssl(self.root, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", key.name)
        elif key_form == "pkcs1":
            openssl(self.root, "genrsa", "-traditional", "-out", key.name, "2048")
        else:
            openssl(self.root, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key.name)
        ext = self.root / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        ext.write_text(
            f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n"
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        )
        openssl(self.root, "req", "-new", "-key", key.name, "-subj", f"/CN={name}", "-out", f"{name}.csr")
        openssl(self.root, "x509", "-req", "-in", f"{name}.csr", "-CA", self.ca.name, "-CAkey",
                self.ca_key.name, "-CAcreateserial", "-days", "2", "-out", cert.name, "-extfile", ext.name)
        return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    pki = Pki(root)
    pki.server = pki.issue("server")
    pki.client = pki.issue("client", client=True)
    return pki


def tls_options(pki, *extra):
    cert, key = pki.server
    return ("--certfile", str(cert), "--keyfile", str(key), *extra)


def client_context(pki, cert=None):
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def https(server, pki, context=None):
    return http.client.HTTPSConnection(server.host, server.port, timeout=10,
                                       context=context or client_context(pki))


def get_json(conn, path="/env"):
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200
    return json.loads(response.read())


def wait_for_access_line(server, text: str, timeout: float = 5) -> None:
    """The access log line is written after the response went out: wait for it."""
    deadline = time.monotonic() + timeout
    while text not in server.stdout:
        assert time.monotonic() < deadline, f"no {text!r} in the access log:\n{server.stdout}"
        time.sleep(0.05)


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args],
                          capture_output=True, timeout=timeout + 5)


# --- TLS with HTTP/1.1 -------------------------------------------------------------------


def test_https_with_http_client(server_factory, pki):
    server = server_factory(APP, *tls_options(pki), "--threads", "2", "--access-log")
    assert server.url.startswith("https://")
    conn = https(server, pki)
    environ = get_json(conn)
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    # Keep-alive: the same TLS connection serves a second request and an upload.
    sock = conn.sock
    body = os.urandom(300_000)
    conn.request("POST", "/upload", body=body)
    response = conn.getresponse()
    assert response.read().decode() == f"{len(body)} {hashlib.sha256(body).hexdigest()}"
    assert conn.sock is sock
    assert conn.sock.version() in ("TLSv1.3", "TLSv1.2")
    conn.close()
    server.wait_for_log(r"Listening at: https://127\.0\.0\.1:\d+")
    wait_for_access_line(server, '"POST /upload HTTP/1.1" 200')


def test_tls12_is_accepted(server_factory, pki):
    server = server_factory(APP, *tls_options(pki))
    context = client_context(pki)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    conn = https(server, pki, context)
    assert get_json(conn)["wsgi.url_scheme"] == "https"
    assert conn.sock.version() == "TLSv1.2"
    conn.close()


def test_file_wrapper_and_streaming_over_tls(server_factory, pki, tmp_path):
    data = os.urandom(1_500_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    server = server_factory(APP, *tls_options(pki))
    conn = https(server, pki)
    conn.request("GET", f"/file?path={path}")
    assert conn.getresponse().read() == data
    conn.request("GET", "/stream?chunks=30&size=50000")
    body = conn.getresponse().read()
    assert len(body) == 30 * 50000 and body[:1] == b"A" and body[-1:] == b"D"
    conn.close()


@pytest.mark.parametrize("key_form", ["pkcs8", "pkcs1", "sec1"])
def test_key_forms(server_factory, pki, key_form):
    cert, key = pki.issue(f"server-{key_form}", key_form)
    header = {"pkcs8": b"BEGIN PRIVATE KEY", "pkcs1": b"BEGIN RSA PRIVATE KEY",
              "sec1": b"BEGIN EC PRIVATE KEY"}[key_form]
    assert header in key.read_bytes()
    server = server_factory(APP, "--certfile", str(cert), "--keyfile", str(key))
    conn = https(server, pki)
    assert get_json(conn)["wsgi.url_scheme"] == "https"
    conn.close()


def start_failure(*options: str) -> subprocess.CompletedProcess:
    return subprocess.run(tidegate_command("--bind", "127.0.0.1:0", *options, APP),
                          cwd=str(APPS_DIR), env=server_env(), capture_output=True, text=True,
                          timeout=30)


def test_bad_certificate_and_key_files_stop_start_up(pki, tmp_path):
    cert, key = pki.server
    other_cert, other_key = pki.client
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    missing = tmp_path / "missing.pem"
    cases = [
        (("--certfile", str(missing), "--keyfile", str(key)), f"--certfile {missing}: no such file"),
        (("--certfile", str(garbage), "--keyfile", str(key)), f"--certfile {garbage}: no certificate"),
        (("--certfile", str(cert), "--keyfile", str(cert)), f"--keyfile {cert}: no private key"),
        (("--certfile", str(cert), "--keyfile", str(other_key)),
         f"--keyfile {other_key}: the private key does not match the certificate in --certfile {cert}"),
        (("--certfile", str(cert), "--keyfile", str(key), "--ca-certs", str(garbage), "--cert-reqs", "required"),
         f"--ca-certs {garbage}: no certificate"),
    ]
    for options, message in cases:
        result = start_failure(*options)
        assert result.returncode == 1, (options, result.stderr)
        assert f"tidegate: error: {message}" in result.stderr, result.stderr
        assert "Booting worker" not in result.stderr


def test_tls_option_errors(pki):
    cert, key = pki.server
    for options, message in [
        (("--certfile", str(cert)), "TLS needs both --certfile and --keyfile"),
        (("--ca-certs", str(pki.ca)), "--ca-certs: needs --certfile and --keyfile"),
        (("--certfile", str(cert), "--keyfile", str(key), "--cert-reqs", "required"),
         "required needs --ca-certs"),
        (("--http", "3"), "argument --http: invalid choice"),
        (("--http2-initial-window-size", "10"), "outside 65535..2147483647"),
        (("--http2-max-concurrent-streams", "0"), "--http2-max-concurrent-streams"),
    ]:
        result = start_failure(*options)
        assert result.returncode == 2, (options, result.stderr)
        assert message in result.stderr, result.stderr


@pytest.mark.parametrize("cert_reqs", ["required", "optional", "none"])
def test_client_certificates(server_factory, pki, cert_reqs, tmp_path):
    server = server_factory(APP, *tls_options(pki, "--ca-certs", str(pki.ca), "--cert-reqs", cert_reqs),
                            "--log-level", "debug")
    # With a certificate from the CA: always served.
    conn = https(server, pki, client_context(pki, pki.client))
    assert get_json(conn)["wsgi.url_scheme"] == "https"
    conn.close()
    # Without one: refused only when required.
    conn = https(server, pki)
    if cert_reqs == "required":
        with pytest.raises(OSError):
            get_json(conn)
        server.wait_for_log("TLS handshake with .* failed")
    else:
        assert get_json(conn)["wsgi.url_scheme"] == "https"
    conn.close()
    # A certificate from another CA is refused whenever one is asked for.
    stranger = Pki(tmp_path / "other", "other-ca").issue("stranger", client=True)
    conn = https(server, pki, client_context(pki, stranger))
    if cert_reqs == "none":
        assert get_json(conn)["wsgi.url_scheme"] == "https"
    else:
        with pytest.raises(OSError):
            get_json(conn)
    conn.close()


# --- HTTP/2 -----------------------------------------------------------------------------


def h2c_url(server, path="/env"):
    return f"http://{server.host}:{server.port}{path}"


def tls_url(server, path="/env"):
    return f"https://{server.host}:{server.port}{path}"


@needs_curl
def test_h2_over_tls_by_alpn(server_factory, pki):
    server = server_factory(APP, *tls_options(pki), "--access-log")
    result = curl("--http2", "--cacert", str(pki.ca), "-w", "\n%{http_version}", tls_url(server, "/env?x=1"))
    assert result.returncode == 0, result.stderr
    body, version = result.stdout.decode().rsplit("\n", 1)
    assert version == "2"
    environ = json.loads(body)
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert environ["QUERY_STRING"] == "x=1"
    # HTTP/1.1 clients are still served on the same listener.
    result = curl("--http1.1", "--cacert", str(pki.ca), "-w", "\n%{http_version}", tls_url(server))
    assert result.stdout.decode().rsplit("\n", 1)[1] == "1.1"
    wait_for_access_line(server, '"GET /env?x=1 HTTP/2" 200')


@needs_curl
def test_http_1_never_speaks_h2(server_factory, pki):
    server = server_factory(APP, *tls_options(pki, "--http", "1"))
    result = curl("--http2", "--cacert", str(pki.ca), "-w", "\n%{http_version}", tls_url(server))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().rsplit("\n", 1)[1] == "1.1"
    result = curl("--http2-prior-knowledge", h2c_url(server))
    assert result.returncode != 0


@needs_curl
def test_h2c_prior_knowledge_and_http1_on_one_port(server_factory):
    server = server_factory(APP)
    result = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", h2c_url(server))
    assert result.returncode == 0, result.stderr
    body, version = result.stdout.decode().rsplit("\n", 1)
    assert version == "2"
    environ = json.loads(body)
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["wsgi.url_scheme"] == "http"
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    assert get_json(conn)["SERVER_PROTOCOL"] == "HTTP/1.1"
    conn.close()


@needs_curl
def test_http_2_only_on_cleartext(server_factory):
    server = server_factory(APP, "--http", "2")
    result = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", h2c_url(server))
    assert result.stdout.decode().rsplit("\n", 1)[1] == "2", result.stderr
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    with pytest.raises((OSError, http.client.HTTPException)):
        get_json(conn)
    conn.close()


@needs_curl
def test_h2_streamed_upload_and_response(server_factory, tmp_path):
    # Bigger than the stream window (64 KiB here): the upload only completes if the server
    # releases flow-control capacity as the app reads.
    server = server_factory(APP, "--http2-initial-window-size", "65535")
    data = os.urandom(3_000_000)
    upload = tmp_path / "upload"
    upload.write_bytes(data)
    result = curl("--http2-prior-knowledge", "--data-binary", f"@{upload}", "-H",
                  "Content-Type: application/octet-stream", h2c_url(server, "/upload"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"{len(data)} {hashlib.sha256(data).hexdigest()}"
    # Chunked-style upload (no content-length).
    result = curl("--http2-prior-knowledge", "-T", str(upload), "-X", "POST", "-H",
                  "Transfer-Encoding:", h2c_url(server, "/upload"))
    assert result.stdout.decode() == f"{len(data)} {hashlib.sha256(data).hexdigest()}", result.stderr
    # A streamed response bigger than the client's window.
    out = tmp_path / "out"
    result = curl("--http2-prior-knowledge", "-o", str(out), h2c_url(server, "/stream?chunks=64&size=65536"))
    assert result.returncode == 0, result.stderr
    body = out.read_bytes()
    assert len(body) == 64 * 65536
    assert body[:65536] == b"A" * 65536 and body[-1:] == bytes([65 + 63 % 26])


@needs_curl
def test_h2_file_wrapper_head_errors_and_hop_by_hop(server_factory, pki, tmp_path):
    data = os.urandom(700_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    server = server_factory(APP, *tls_options(pki))
    out = tmp_path / "out"
    result = curl("--http2", "--cacert", str(pki.ca), "-o", str(out), tls_url(server, f"/file?path={path}"))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data
    # HEAD: the GET headers, no body.
    result = curl("--http2", "--cacert", str(pki.ca), "-I", tls_url(server))
    head = result.stdout.decode().lower()
    assert head.startswith("http/2 200") and "content-length:" in head, head
    # An app error is a 500.
    result = curl("--http2", "--cacert", str(pki.ca), "-w", "%{http_code}", "-o", "/dev/null",
                  tls_url(server, "/boom"))
    assert result.stdout.decode() == "500"
    server.wait_for_log("ValueError: boom")
    # Hop-by-hop fields from the app are dropped; the others kept.
    result = curl("--http2", "--cacert", str(pki.ca), "-D", "-", "-o", "/dev/null", tls_url(server, "/hop"))
    head = result.stdout.decode().lower()
    assert result.returncode == 0, result.stderr
    assert "x-kept: yes" in head
    assert "connection:" not in head and "keep-alive:" not in head


@needs_curl
def test_h2_header_limits(server_factory):
    server = server_factory(APP, "--limit-request-field-size", "100")
    result = curl("--http2-prior-knowledge", "-H", "X-Big: " + "a" * 200, "-w", "%{http_code}",
                  "-o", "/dev/null", h2c_url(server))
    assert result.stdout.decode() == "431"
    result = curl("--http2-prior-knowledge", "-H", "X-Small: a", "-w", "%{http_code}",
                  "-o", "/dev/null", h2c_url(server))
    assert result.stdout.decode() == "200"


@needs_h2load
@pytest.mark.parametrize("tls", [True, False], ids=["h2", "h2c"])
def test_h2load_concurrent_streams(server_factory, pki, tls):
    options = tls_options(pki) if tls else ()
    server = server_factory(APP, *options, "--threads", "4", "--http2-max-concurrent-streams", "10")
    url = (tls_url if tls else h2c_url)(server)
    result = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10", url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed",
                     result.stdout), result.stdout
    assert "status codes: 2000 2xx" in result.stdout


# --- Certificates reloaded on HUP -------------------------------------------------------


def peer_der(conn) -> bytes:
    return conn.sock.getpeercert(binary_form=True)


def pem_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def replace_file(source: Path, target: Path) -> None:
    temporary = target.with_suffix(".new")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def test_hup_reloads_certificates_without_dropping_connections(server_factory, pki, tmp_path):
    first, second = pki.issue("reload-a"), pki.issue("reload-b", "sec1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    replace_file(first[0], cert)
    replace_file(first[1], key)
    server = server_factory(APP, "--certfile", str(cert), "--keyfile", str(key), "--threads", "2")
    server.worker_pids(1)
    old = https(server, pki)
    assert get_json(old)["wsgi.url_scheme"] == "https"
    assert peer_der(old) == pem_der(first[0])
    # A request in flight on the old keep-alive connection while the files change and HUP
    # starts new workers.
    old.request("GET", "/slow?sleep=2")
    time.sleep(0.3)
    replace_file(second[0], cert)
    replace_file(second[1], key)
    os.kill(server.pid, signal.SIGHUP)
    server.wait_for_log("Reload complete: 1 old worker draining", timeout=15)
    time.sleep(0.5)  # the old worker closes its listening socket on SIGTERM
    new = https(server, pki)
    new.connect()
    assert peer_der(new) == pem_der(second[0])
    assert get_json(new)["wsgi.url_scheme"] == "https"
    new.close()
    response = old.getresponse()
    assert response.status == 200 and response.read() == b"slept"
    old.close()

    # A broken certificate: the reload is refused, the running workers keep serving.
    cert.write_text("broken\n")
    os.kill(server.pid, signal.SIGHUP)
    server.wait_for_log(r"SIGHUP: not reloading, the running workers keep serving: "
                        rf"--certfile {re.escape(str(cert))}: no certificate")
    time.sleep(0.5)
    assert server.process.poll() is None
    again = https(server, pki)
    again.connect()
    assert peer_der(again) == pem_der(second[0])
    assert get_json(again)["SERVER_PROTOCOL"] == "HTTP/1.1"
    again.close()


@needs_curl
@pytest.mark.allow_log
def test_h2_timeout_answers_504(server_factory):
    server = server_factory(APP, "--timeout", "1")
    result = curl("--http2-prior-knowledge", "-w", "%{http_code}", "-o", "/dev/null",
                  h2c_url(server, "/slow?sleep=4"))
    assert result.stdout.decode() == "504", result.stderr
    server.wait_for_log("WORKER TIMEOUT")


@needs_curl
def test_h2_graceful_stop_finishes_open_streams(server_factory):
    server = server_factory(APP)
    client = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "20",
                               "-w", " %{http_code}", h2c_url(server, "/slow?sleep=1.5")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    server.wait_for_log("Worker .* is ready")
    time.sleep(0.5)
    assert server.stop(signal.SIGTERM) == 0
    out, err = client.communicate(timeout=20)
    assert out.decode() == "slept 200", err


def test_relative_paths_are_taken_from_where_the_command_runs(server_factory, pki, tmp_path):
    cert, key = pki.server
    shutil.copyfile(cert, tmp_path / "cert.pem")
    shutil.copyfile(key, tmp_path / "key.pem")
    server = server_factory(APP, "--chdir", str(APPS_DIR), "--certfile", "cert.pem",
                            "--keyfile", "key.pem", cwd=tmp_path)
    conn = https(server, pki)
    assert get_json(conn)["wsgi.url_scheme"] == "https"
    conn.close()
