"""Production serving: `check --deploy` with the production environment, gunicorn's config, WhiteNoise.

Each test runs a fresh process with exactly the environment it sets, as `make serve` would.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import manage

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_ALLOWED_HOSTS": "docs.example.com",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_PRELOAD": "1",
    "DJANGO_SECURE_SSL_REDIRECT": "1",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
}


def environment(tmp_path, **extra):
    """Return the test's own environment (keys, salt, secret key) with `extra` on top."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_SECURE", "DJANGO_DEBUG", "DJANGO_SERVE", "GUNICORN_"))
        and name != "DJANGO_ALLOW_ASYNC_UNSAFE"  # the tests' own; never in production
    }
    return {
        **clean,
        "DOCVAULT_ENV_FILE": "",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
        **extra,
    }


def test_check_deploy_passes_with_the_production_environment(tmp_path):
    from reports.devcert import signing_cert_create

    # Production signs its audit reports: a signing certificate and the CA that verifies it.
    signer = signing_cert_create(tmp_path / "signing")
    signing = {
        "REPORT_SIGNING_P12": str(signer.p12),
        "REPORT_SIGNING_P12_PASSPHRASE_FILE": str(signer.passphrase),
        "REPORT_TRUST_ROOTS": str(signer.ca),
    }
    result = manage(
        environment(tmp_path, **PRODUCTION, **signing),
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_without_it(tmp_path):
    result = manage(environment(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    for warning in ["security.W004", "security.W008"]:
        assert warning in result.stderr


def test_a_malformed_proxy_header_setting_is_a_clear_error(tmp_path):
    env = environment(tmp_path, DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO")
    result = manage(env, "check")
    assert result.returncode != 0
    assert "DJANGO_SECURE_PROXY_SSL_HEADER must be 'HEADER,value'" in result.stderr


def test_production_settings_as_a_process_sees_them(tmp_path):
    probe = (
        "import json, django; from django.conf import settings; django.setup(); "
        "print(json.dumps({'hsts': settings.SECURE_HSTS_SECONDS, "
        "'proxy': settings.SECURE_PROXY_SSL_HEADER, 'redirect': settings.SECURE_SSL_REDIRECT, "
        "'cookies': [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE], "
        "'static': settings.STORAGES['staticfiles']['BACKEND'], "
        "'whitenoise': 'whitenoise.middleware.WhiteNoiseMiddleware' in settings.MIDDLEWARE, "
        "'bucket': settings.AWS_STORAGE_BUCKET_NAME, 'secret': settings.AWS_SECRET_ACCESS_KEY}))"
    )
    secret = tmp_path / "s3-secret"
    secret.write_text("filed-secret\n")
    env = environment(
        tmp_path,
        **PRODUCTION,
        DJANGO_SERVE_STATIC="1",
        AWS_STORAGE_BUCKET_NAME="vault",
        AWS_SECRET_ACCESS_KEY_FILE=str(secret),
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    seen = json.loads(result.stdout)
    assert seen == {
        "hsts": 31536000,
        "proxy": ["HTTP_X_FORWARDED_PROTO", "https"],
        "redirect": True,
        "cookies": [True, True],
        "static": "whitenoise.storage.CompressedManifestStaticFilesStorage",
        "whitenoise": True,
        "bucket": "vault",
        "secret": "filed-secret",
    }
    without = subprocess.run(
        [sys.executable, "-c", probe],
        env=environment(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(without.stdout)["whitenoise"] is False


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(port, path, **headers):
    """GET without following redirects; return status, headers and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_gunicorn_serves_hashed_static_files_and_logs_no_query_strings(tmp_path):
    port = _free_port()
    env = environment(
        tmp_path,
        **{**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "127.0.0.1"},
        DJANGO_SERVE_STATIC="1",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="2",
    )
    manage(env, "collectstatic", "--noinput", "--verbosity", "0", check=True)
    manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())
    hashed = manifest["paths"]["admin/css/base.css"]
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.py"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        https = {"X-Forwarded-Proto": "https"}
        status, headers, body = _get(port, f"/static/{hashed}", **https)
        assert status == 200 and b"body" in body
        assert "max-age=315360000" in headers["Cache-Control"]  # hashed: cached for good
        assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
        status, headers, _ = _get(port, "/accounts/login/?next=/secret-place", **https)
        assert status in (200, 302)
        status, headers, _ = _get(port, "/accounts/login/")  # plain HTTP
        assert status == 301 and headers["Location"].startswith("https://")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    text = log.read_text()
    assert f"GET /static/{hashed} HTTP/1.1" in text
    assert "GET /accounts/login/ HTTP/1.1" in text
    assert "secret-place" not in text and "next=" not in text
