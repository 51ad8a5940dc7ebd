"""A server process's own connections: opened once, closed when it stops."""

import pytest

from tests.conftest import start_server, stop_process, wait_until
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
