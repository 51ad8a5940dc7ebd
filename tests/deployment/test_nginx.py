"""Several processes behind nginx: Debian's nginx with the deployment's own locations
(`deploy/nginx/medhastra-locations.conf`), a Redis server of the test's own, and two
Daphne processes of the app."""

import getpass
import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    ROOT,
    free_port,
    installed,
    log_in,
    start_server,
    stop_process,
    wait_until,
)
from tests.streams import follow

pytestmark = [pytest.mark.deployment, pytest.mark.django_db(transaction=True)]

LOCATIONS = ROOT / "deploy" / "nginx" / "medhastra-locations.conf"
SITE = ROOT / "deploy" / "nginx" / "medhastra.conf"
NAME = "medhastra.example.org"  # the site's server_name


@pytest.fixture
def redis_url(tmp_path):
    port = free_port()
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    redis = subprocess.Popen(
        [installed("redis-server", "redis-server"), *options, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    wait_until(lambda: _answers(port), 10, "Redis did not start")
    yield f"redis://127.0.0.1:{port}/0"
    stop_process(redis)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _nginx(tmp_path: Path, upstreams: list[str]) -> tuple[str, subprocess.Popen]:
    """nginx in front of these servers, round robin, with the deployment's locations and
    a header naming the process that answered."""
    port = free_port()
    servers = "".join(f"server {url.removeprefix('http://')};" for url in upstreams)
    url = f"http://127.0.0.1:{port}"
    site = f"""
        upstream medhastra {{ {servers} }}
        server {{
            listen 127.0.0.1:{port};
            add_header X-Upstream $upstream_addr always;
            include {LOCATIONS};
        }}
    """
    return url, _start_nginx(tmp_path, site, f"{url}/healthz")


def _start_nginx(tmp_path: Path, site: str, probe: str) -> subprocess.Popen:
    """Debian's nginx serving `site` (its upstream and servers), once `nginx -t` passes."""
    config = tmp_path / "nginx.conf"
    config.write_text(f"""
        user {getpass.getuser()};  # who can read the test's folders (ignored unless root)
        worker_processes 1;
        daemon off;
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/nginx-error.log;
        events {{}}
        http {{
            access_log {tmp_path}/nginx-access.log;
            client_body_temp_path {tmp_path}/body;
            proxy_temp_path {tmp_path}/proxy;
            {site}
        }}
    """)
    command = [installed("nginx", "nginx"), "-c", str(config), "-p", str(tmp_path)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    nginx = subprocess.Popen(command)
    wait_until(lambda: _up(probe), 10, "nginx did not start")
    return nginx


def _site_as_deployed(tmp_path: Path, upstream: str, http_port: int, https_port: int) -> str:
    """The site template filled in as its comments ask: this host's ports (IPv4 only
    here), a self-signed certificate, the locations file and a static folder."""
    cert, key, static = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "static"
    subprocess.run(
        [installed("openssl", "openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-days", "1", "-subj", f"/CN={NAME}", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    static.mkdir()
    (static / "medhastra.css").write_text("body {}")
    site = SITE.read_text()
    for template, filled in {
        "server 127.0.0.1:8001;\n    server 127.0.0.1:8002;": f"server {upstream};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "/etc/letsencrypt/live/medhastra.example.org/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/medhastra.example.org/privkey.pem": str(key),
        "/etc/nginx/snippets/medhastra-locations.conf": str(LOCATIONS),
        "/srv/medhastra/.medhastra/static/": f"{static}/",
    }.items():
        assert template in site, f"the template no longer has {template!r}"
        site = site.replace(template, filled)
    return "\n".join(line for line in site.splitlines() if "listen [::]" not in line)


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5, verify=False).status_code == 200
    except httpx.HTTPError:
        return False


def _logs_are_json_lines(tmp_path) -> None:
    for log in tmp_path.glob("daphne-*.log"):
        for line in log.read_text().splitlines():
            json.loads(line)  # raises on anything else


@pytest.fixture
def two_processes_behind_nginx(simulator, redis_url, tmp_path):
    servers = [
        start_server(
            simulator, tmp_path / f"daphne-{n}.log", behind_proxy=True, REDIS_URL=redis_url
        )
        for n in (1, 2)
    ]
    url, nginx = _nginx(tmp_path, [server_url for server_url, _ in servers])
    yield url
    stop_process(nginx)
    for _, process in servers:
        stop_process(process)
    _logs_are_json_lines(tmp_path)


def test_a_stage_streams_through_any_process_and_a_reconnect_to_the_other_resumes_exactly(
    two_processes_behind_nginx, alice, case, simulator
):
    simulator.configure(tps=40, words=150)
    with httpx.Client(base_url=two_processes_behind_nginx, timeout=30) as http:
        log_in(http, alice)
        started = http.post(f"/cases/{case.pk}/stages/summary/run")
        assert started.status_code == 302
        url = f"/cases/{case.pk}/stages/summary/events"

        first, _ = follow(http, url, stop_after=8)
        time.sleep(0.5)  # generation goes on while nobody watches
        view, _ = follow(http, url, first, last_event_id=first.events[-1].id)

    generating = started.headers["X-Upstream"]
    watching, reconnected = (headers["X-Upstream"] for headers in view.responses)
    assert watching != generating, "the page followed through the other process"
    assert reconnected != watching, "the reconnect landed on the other process"
    assert "delta" in first.names, "text arrived live, through Redis"
    sent = simulator.sent()[-1]
    assert view.streamed("reasoning") == sent["reasoning"]
    assert view.streamed("summary") == sent["summary"]


def test_behind_nginx_metrics_are_hidden_and_the_client_cannot_choose_its_address(
    two_processes_behind_nginx, alice
):
    """nginx on this very host is still a proxy: /metrics stays closed through it. It tells
    the app the client's address itself, so a forged X-Forwarded-For cannot dodge the
    login throttling."""
    behind = two_processes_behind_nginx
    assert httpx.get(f"{behind}/metrics").status_code == 404
    with httpx.Client(base_url=behind) as http:
        token = http.get("/admin/login/").cookies["csrftoken"]

        def log_in_as(username, password, address):
            return http.post(
                "/admin/login/",
                headers={"X-Forwarded-For": address},
                data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            )

        # Five names guessed, each from an address of its own, it says: the fifth locks.
        answers = [log_in_as(f"nobody-{n}", "guess", f"198.51.100.{n}") for n in range(5)]
        assert [answer.status_code for answer in answers] == [200] * 4 + [429]
        refused = log_in_as("alice", "alice-password-1", "198.51.100.77")
    assert refused.status_code == 429, "the five came from one address, which is now refused"


def test_the_site_template_serves_the_app_over_tls_and_http2_and_redirects_plain_http(
    simulator, alice, case, tmp_path
):
    upstream, daphne = start_server(
        simulator, tmp_path / "daphne-1.log", behind_proxy=True,
        ALLOWED_HOSTS=f"{NAME},127.0.0.1",
    )  # fmt: skip
    named = {"Host": NAME}  # as a browser sends it once DNS names this host
    http_port, https_port = free_port(), free_port()
    site = _site_as_deployed(tmp_path, upstream.removeprefix("http://"), http_port, https_port)
    https = f"https://127.0.0.1:{https_port}"
    nginx = _start_nginx(tmp_path, site, f"{https}/healthz")
    try:
        plain = httpx.get(f"http://127.0.0.1:{http_port}/cases/", headers=named)
        assert plain.status_code == 301
        assert plain.headers["location"] == f"https://{NAME}/cases/"

        curl = [installed("curl", "curl"), "--http2", "--insecure", "--silent", "--head"]
        answer = subprocess.run([*curl, f"{https}/static/medhastra.css"], capture_output=True)
        head = answer.stdout.decode().lower()
        assert head.startswith("http/2 200"), head
        assert "cache-control: max-age=604800" in head

        simulator.configure(tps=80, words=60)
        origin = {**named, "Origin": f"https://{NAME}"}  # checked by CSRF over HTTPS
        with httpx.Client(base_url=https, headers=origin, verify=False, timeout=30) as browser:
            log_in(browser, alice)
            assert browser.post(f"/cases/{case.pk}/stages/summary/run").status_code == 302
            view, _ = follow(browser, f"/cases/{case.pk}/stages/summary/events")
        assert "delta" in view.names, "streamed through TLS as it was written"
        assert view.streamed("summary") == simulator.sent()[-1]["summary"]
    finally:
        stop_process(nginx)
        stop_process(daphne)
    _logs_are_json_lines(tmp_path)
