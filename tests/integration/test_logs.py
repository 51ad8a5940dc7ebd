"""The server's log: JSON lines carrying the ids that find what happened, never case text
or model output."""

import json

import pytest

from tests.conftest import wait_until
from tests.streams import follow

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}


def _lines_since(log, start: int) -> list[dict]:
    text = log.read_text()[start:]
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_failure_is_logged_as_json_with_its_ids_and_no_clinical_text(
    server, server_log, alice_http, case, simulator
):
    start = len(server_log.read_text())
    simulator.configure(tps=200)
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    simulator.configure(faults=["400"])  # its message quotes the prompt back
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers={**HTMX, "X-Request-ID": "r-1"})
    failed = case.stage_runs.filter(status="error")
    wait_until(failed.exists, 20)
    run = failed.get()
    reference = run.error_message.split("Reference ")[1].rstrip(".)")
    wait_until(lambda: reference in server_log.read_text())

    lines = _lines_since(server_log, start)
    failure = next(line for line in lines if line.get("reference") == reference)
    assert failure["level"] == "ERROR"
    assert (failure["case"], failure["run"]) == (case.pk, run.pk)
    started = next(line for line in lines if line.get("request") == "r-1")
    assert started["logger"] == "medhastra.requests"
    assert started["message"].startswith(f"POST /cases/{case.pk}/stages/summary/run 200")
    assert started["case"] == case.pk

    logged = server_log.read_text()[start:]
    sent = simulator.sent()
    for secret in (
        case.chief_complaint,
        case.vitals,
        sent[0]["reasoning"][:40],
        sent[0]["summary"],
    ):
        assert secret not in logged
