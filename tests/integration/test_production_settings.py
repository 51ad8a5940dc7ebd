"""Production is the default: what an operator gets who sets only SECRET_KEY and
ALLOWED_HOSTS and runs the app behind a TLS proxy."""

import re
import secrets
import subprocess
import sys

import httpx
import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from tests.conftest import ROOT, _test_database_url, start_server, stop_process

pytestmark = pytest.mark.django_db(transaction=True)

KEY = secrets.token_urlsafe(50)


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """manage.py as an operator runs it: no DEBUG, only what `env` sets."""
    environment = {"PATH": "/usr/bin:/bin", "DATABASE_URL": _test_database_url(), **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_with_only_a_key_and_hosts_check_deploy_warns_of_the_ssl_redirect_alone():
    checked = _manage("check", "--deploy", SECRET_KEY=KEY, ALLOWED_HOSTS="medhastra.example.org")
    assert checked.returncode == 0, checked.stderr
    assert re.findall(r"\(([\w.]+)\)", checked.stderr) == ["security.W008"], checked.stderr


def test_the_documented_production_settings_pass_check_deploy_clean(tmp_path):
    """deploy/medhastra.env.example as an operator fills it in: a key, and this machine's
    database and metrics directory."""
    template = (ROOT / "deploy" / "medhastra.env.example").read_text()
    documented = dict(
        line.split("=", 1) for line in template.splitlines() if line and not line.startswith("#")
    )
    filled = {"SECRET_KEY": KEY, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    checked = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        **{**documented, **filled, "DATABASE_URL": _test_database_url()},
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "System check identified no issues" in checked.stdout


@pytest.mark.parametrize("key", [None, "x", "a" * 60, secrets.token_urlsafe(20)])
def test_without_debug_it_refuses_to_start_without_a_long_secret_key(key):
    env = {"ALLOWED_HOSTS": "medhastra.example.org"} | ({"SECRET_KEY": key} if key else {})
    checked = _manage("check", **env)
    assert checked.returncode != 0
    assert "Set SECRET_KEY to a random string of 50 or more characters" in checked.stderr


@pytest.fixture(scope="module")
def production(simulator_process, django_db_setup, tmp_path_factory):
    """The app as deployed: DEBUG unset (off), a real key, behind a proxy at this host."""
    url, process = start_server(
        simulator_process,
        tmp_path_factory.mktemp("production") / "daphne.log",
        DEBUG="",
        SECRET_KEY=KEY,
        ALLOWED_HOSTS="127.0.0.1",
    )
    yield url
    stop_process(process)


def _log_in(production: str) -> httpx.Response:
    """alice logs in through the TLS proxy: the answer sets her session cookie."""
    origin = f"https://127.0.0.1:{httpx.URL(production).port}"
    with httpx.Client(base_url=production, headers={"X-Forwarded-Proto": "https"}) as http:
        token = http.get("/accounts/login/").cookies["csrftoken"]
        # The cookie is Secure: this plain-HTTP client sends it by hand, as a browser would
        # over the proxy's TLS.
        return http.post(
            "/accounts/login/",
            data={
                "username": "alice",
                "password": "alice-password-1",
                "csrfmiddlewaretoken": token,
            },
            headers={"Referer": f"{origin}/accounts/login/", "Cookie": f"csrftoken={token}"},
        )


def _session_cookie(logged_in: httpx.Response) -> str:
    return next(c for c in logged_in.headers.get_list("Set-Cookie") if c.startswith("sessionid"))


def _session_of(production: str) -> str:
    return _session_cookie(_log_in(production)).split(";")[0].split("=", 1)[1]


def test_an_error_shows_no_debug_page_and_no_setting(production, alice, case):
    with httpx.Client(base_url=production, cookies={"sessionid": _session_of(production)}) as http:
        for method, path in [
            ("GET", f"/cases/{case.pk}/stages/summary%00/events"),
            ("POST", f"/cases/{case.pk}/stages/summary%00/cancel"),
            ("GET", "/no-such-page"),
            ("GET", f"/cases/{case.pk + 1000}/"),  # logged in: no such case of hers
        ]:
            response = http.request(method, path, headers={"X-Forwarded-Proto": "https"})
            assert response.status_code in (403, 404), (path, response.status_code)
            debugging = ("Django tried these URL patterns", "DEBUG = True", "Traceback")
            for secret in ("DATABASE_URL", "SECRET_KEY", "LLM_API_KEY", KEY, *debugging):
                assert secret not in response.text, (path, secret)


def test_behind_the_proxy_pages_are_secure_private_and_under_a_policy(production, alice, case):
    tls = {"X-Forwarded-Proto": "https"}
    response = httpx.get(f"{production}/accounts/login/", headers=tls)
    with httpx.Client(base_url=production, cookies={"sessionid": _session_of(production)}) as http:
        pages = [http.get(path, headers=tls) for path in ("/", f"/cases/{case.pk}/")]
    for page in (response, *pages):
        assert page.status_code == 200, page.url
        assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        assert "no-store" in page.headers["Cache-Control"]
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "csrftoken" in cookie

    plain = httpx.get(f"{production}/accounts/login/")  # not through the TLS proxy
    assert "Strict-Transport-Security" not in plain.headers
    assert plain.status_code == 200  # the redirect to https is the proxy's job


def test_a_session_ends_after_session_hours_and_with_the_browser(production, alice):
    logged_in = _log_in(production)
    assert logged_in.status_code == 302, logged_in.text
    cookie = _session_cookie(logged_in)
    assert "expires" not in cookie.lower() and "max-age" not in cookie.lower()  # browser's end
    assert "Secure" in cookie and "HttpOnly" in cookie
    session = Session.objects.get(session_key=cookie.split(";")[0].split("=", 1)[1])
    hours = (session.expire_date - timezone.now()).total_seconds() / 3600
    assert 7.9 < hours <= 8
