"""A process that dies mid-generation: its work turns interrupted, nothing is lost."""

import signal
import time

import pytest

from tests.conftest import start_server, wait_until
from tests.streams import follow
from workflow.models import StageRun, WorkflowRun

pytestmark = pytest.mark.django_db(transaction=True)


def _kill_a_server_mid_generation(alice_http, simulator, tmp_path, path):
    """POST `path` to a server of its own, then SIGKILL it once a stage has text."""
    simulator.configure(tps=20, words=200)
    doomed_url, doomed = start_server(simulator, tmp_path / "doomed.log")
    try:
        assert alice_http.post(doomed_url + path).status_code == 302
        wait_until(StageRun.objects.exclude(reasoning="").exists)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()


def test_a_killed_server_leaves_an_interrupted_stage_that_can_continue(
    alice_http, case, simulator, tmp_path
):
    _kill_a_server_mid_generation(
        alice_http, simulator, tmp_path, f"/cases/{case.pk}/stages/summary/run"
    )
    killed_at = time.monotonic()

    view, _ = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")

    run = StageRun.objects.get()
    assert run.status == "interrupted"
    assert time.monotonic() - killed_at < 30
    assert run.reasoning and view.streamed("reasoning") == run.reasoning
    assert simulator.sent()[0]["reasoning"].startswith(run.reasoning)
    assert "was interrupted" in view.events[-1].data
    assert 'data-action="continue"' in view.events[-1].data

    simulator.configure(tps=500)
    assert alice_http.post(f"/cases/{case.pk}/stages/summary/continue").status_code == 302
    view, _ = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    continued = StageRun.objects.latest("queued_at")
    assert continued.reasoning == run.reasoning + simulator.sent()[-1]["reasoning"]
    assert view.streamed("reasoning") == continued.reasoning


def test_a_group_whose_server_was_killed_ends_with_its_stages_interrupted(
    alice_http, case, simulator, tmp_path
):
    _kill_a_server_mid_generation(
        alice_http, simulator, tmp_path, f"/cases/{case.pk}/groups/assessment/run"
    )

    view, _ = follow(alice_http, f"/cases/{case.pk}/groups/assessment/events")

    assert view.names[-1] == "done"
    statuses = dict(StageRun.objects.values_list("stage_key", "status"))
    assert statuses == {"summary": "interrupted", "differential": "interrupted"}
    assert WorkflowRun.objects.get().finished_at is not None
    summary = StageRun.objects.get(stage_key="summary")
    assert summary.reasoning and view.streamed("reasoning") == summary.reasoning


def test_a_killed_servers_work_turns_interrupted_with_no_page_open(
    alice_http, case, simulator, tmp_path
):
    _kill_a_server_mid_generation(
        alice_http, simulator, tmp_path, f"/cases/{case.pk}/stages/summary/run"
    )

    wait_until(lambda: StageRun.objects.get().status == "interrupted", 30, "never swept")
    assert StageRun.objects.get().reasoning, "its text is kept"
