"""A server process's own connections: opened once, closed when it stops."""

import httpx
import pytest
from django.db import connection

from tests.conftest import start_server, stop_process, wait_until
from tests.proxies import DatabaseLink
from workflow.models import StageRun

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_stopped_server_closes_its_provider_client_and_database_pool(
    alice_http, case, simulator, tmp_path
):
    log = tmp_path / "server.log"
    url, server = start_server(simulator, log)
    try:
        alice_http.post(f"{url}/cases/{case.pk}/stages/summary/run")
        wait_until(lambda: StageRun.objects.filter(status="complete").exists())
    finally:
        stop_process(server)
    assert server.returncode == 0, log.read_text()
    assert "Closed the provider client and the database pool." in log.read_text()


def test_a_server_stopped_mid_generation_leaves_it_interrupted_with_its_text(
    alice_http, case, simulator, tmp_path
):
    simulator.configure(tps=20, words=400)
    log = tmp_path / "server.log"
    url, server = start_server(simulator, log)
    try:
        alice_http.post(f"{url}/cases/{case.pk}/stages/summary/run")
        wait_until(lambda: len(StageRun.objects.get().reasoning) > 40)
    finally:
        stop_process(server)  # SIGTERM, as a redeploy does

    run = StageRun.objects.get()
    assert run.status == "interrupted", "ended by the server itself, before its lease ran out"
    assert run.reasoning and simulator.sent()[-1]["reasoning"].startswith(run.reasoning)
    assert run.resumable


def test_healthz_answers_503_while_the_database_is_down(simulator, tmp_path):
    db = connection.settings_dict
    host, port = db["HOST"] or db["OPTIONS"].get("host", ""), int(db["PORT"] or 5432)
    with DatabaseLink(host, port) as link:
        database_url = f"postgresql://{db['USER']}@127.0.0.1:{link.port}/{db['NAME']}"
        url, server = start_server(simulator, tmp_path / "server.log", DATABASE_URL=database_url)
        try:
            assert httpx.get(f"{url}/healthz").text == "ok"
            link.go_down()
            answer = httpx.get(f"{url}/healthz", timeout=10)
            assert (answer.status_code, answer.text) == (503, "database unavailable")
            link.come_up()
            wait_until(lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200, 40)
        finally:
            stop_process(server)
