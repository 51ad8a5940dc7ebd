"""Shared fixtures: clinicians, cases, and the real processes the suite talks to.

`server` is Daphne serving the app in a subprocess on the test database, wired to
`simulator`, an OpenAI-compatible LLM simulator in another subprocess; tests reach both
over real HTTP. Tests that use the server need committed data: `transactional_db`.
"""

import asyncio
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.streams import routed
from workflow import asyncdb
from workflow.models import ClinicalCase

ROOT = Path(__file__).resolve().parent.parent
# Playwright's sync API keeps an event loop in the test thread; the ORM calls the tests
# make between browser steps are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _test_database_url() -> str:
    db = connection.settings_dict
    host = quote(db["HOST"] or db["OPTIONS"].get("host", ""), safe="")
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgresql://{db['USER']}@{host}{port}/{db['NAME']}"


class Simulator:
    def __init__(self, url: str) -> None:
        self.url = url
        self.base_url = f"{url}/v1"

    def configure(self, **config) -> None:
        httpx.post(f"{self.url}/control", json=config).raise_for_status()

    def reset(self) -> None:
        self.configure(
            ttft=0.05,
            tps=200.0,
            words=60,
            faults=[],
            fault_rates={},
            seed=0,
            markdown=False,
            requests=[],
        )

    def state(self) -> dict:
        """The simulator's settings and the requests it received."""
        return httpx.get(f"{self.url}/control").json()

    def requests(self) -> list[dict]:
        return self.state()["requests"]

    def sent(self) -> list[dict[str, str]]:
        """What it wrote back to each request, in order, as the app keeps it (`routed`)."""
        return [routed(request) for request in self.requests()]


def _start(args: list[str], env: dict[str, str], url: str, log: Path | None = None):
    output = log.open("w") if log else None
    # The servers keep Django's guard against the ORM in async code; only tests lift it.
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    process = subprocess.Popen(
        args, cwd=ROOT, env={**inherited, **env}, stdout=output, stderr=subprocess.STDOUT
    )
    wait_until_up(url, process)
    return process


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def simulator_process(django_db_setup):
    simulator, process = start_simulator()
    yield simulator
    stop_process(process)


@pytest.fixture
def simulator(simulator_process):
    simulator_process.reset()
    return simulator_process


def server_env(simulator: Simulator) -> dict[str, str]:
    """The app's environment under test: the test database, the simulator, short limits."""
    return {
        "DATABASE_URL": _test_database_url(),
        "LLM_BASE_URL": simulator.base_url,
        "LLM_API_KEY": "test-key",
        "LLM_MODEL": "simulator",
        "STREAM_HEARTBEAT_INTERVAL": "1",
        "LLM_BACKOFF": "0.05",
        "LLM_FIRST_TOKEN_TIMEOUT": "3",
        "LLM_IDLE_TIMEOUT": "1.5",
        "LEASE_SECONDS": "3",
        "DEBUG": "true",
    }


def start_server(
    simulator: Simulator,
    log: Path,
    *,
    cores: str | None = None,
    behind_proxy: bool = False,
    **env,
) -> tuple[str, subprocess.Popen]:
    """Daphne serving the app on a free port (on these CPU cores), its output in `log`;
    `behind_proxy`: as deployed, taking the client's address from the proxy, and leaving
    the access log to the app's own JSON lines."""
    port = free_port()
    deployed = deployed_daphne_flags() if behind_proxy else []
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *deployed,
            "medhastra.asgi:application"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return url, _start(_on(cores, args), {**server_env(simulator), **env}, f"{url}/healthz", log)


def installed(program: str, package: str) -> str:
    """The path of a program a test needs (Debian's `package`); the test is skipped
    without it, which fails it in CI for browser and deployment tests (see below)."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{program} is not installed (apt-get install -y {package})")
    return path


def deployed_daphne_flags() -> list[str]:
    """The flags the systemd unit gives Daphne before its address: tests run them."""
    unit = (ROOT / "deploy" / "systemd" / "medhastra@.service").read_text()
    command = shlex.split(next(line for line in unit.splitlines() if line.startswith("ExecStart=")))
    return command[1 : command.index("-b")]


def start_simulator(*, cores: str | None = None) -> tuple[Simulator, subprocess.Popen]:
    """The LLM simulator on a free port (on these CPU cores)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "tests.llm_simulator", "--port", str(port)]
    return Simulator(url), _start(_on(cores, args), {}, f"{url}/control")


def _on(cores: str | None, args: list[str]) -> list[str]:
    return ["taskset", "-c", cores, *args] if cores else args


def wait_until(condition, seconds: float = 10, why: str = "timed out") -> None:
    """Poll `condition` until it holds; fail with `why` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def scrape(url: str) -> dict[tuple, float]:
    """Every sample at a server's /metrics, by (name, sorted labels)."""
    text = httpx.get(f"{url}/metrics").raise_for_status().text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def run_async[T](job: Coroutine[None, None, T]) -> T:
    """Run a coroutine as the server does, giving back the connections it took."""

    async def and_close() -> T:
        try:
            return await job
        finally:
            await asyncdb.close()
            await sync_to_async(connections.close_all)()

    return asyncio.run(and_close())


@pytest.fixture(scope="session")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server") / "daphne.log"


@pytest.fixture(scope="session")
def server_url(simulator_process, django_db_setup, server_log):
    url, process = start_server(simulator_process, server_log)
    yield url
    stop_process(process)


@pytest.fixture
def server(server_url, simulator, transactional_db):
    """The app over HTTP, with a fresh simulator and committed test data."""
    return server_url


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password-1")


@pytest.fixture
def case(alice):
    return ClinicalCase.objects.create(
        owner=alice,
        age=58,
        sex="male",
        chief_complaint="Chest pain for 2 hours",
        vitals="HR 104, BP 150/90",
    )


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def alice_http(server, alice):
    """An HTTP client logged in as alice against the real server, CSRF cookie included."""
    with httpx.Client(base_url=server, timeout=30) as http:
        log_in(http, alice)
        yield http


def log_in(http: httpx.Client, user) -> None:
    """Give an HTTP client the session and CSRF token of `user` on the real server."""
    django_client = Client()
    django_client.force_login(user)
    session = django_client.cookies[settings.SESSION_COOKIE_NAME].value
    http.cookies.set(settings.SESSION_COOKIE_NAME, session)
    http.get("/cases/new/").raise_for_status()  # sets the CSRF cookie
    http.headers["X-CSRFToken"] = http.cookies["csrftoken"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a browser or deployment test may not be skipped: what a clinician sees, and
    what a deployment runs, must be checked."""
    report = yield
    required = item.get_closest_marker("browser") or item.get_closest_marker("deployment")
    if os.environ.get("CI") and report.skipped and required:
        report.outcome = "failed"
        report.longrepr = f"Required test skipped in CI: {report.longrepr}"
    return report
