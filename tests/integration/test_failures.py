"""Provider failures, stop, retry and continue, against the simulator's faults."""

import re
import time

import pytest

from tests.conftest import wait_until
from tests.streams import follow, squash
from workflow.models import ChatMessage, StageRun

pytestmark = pytest.mark.django_db(transaction=True)


def _post(http, case, path):
    response = http.post(f"/cases/{case.pk}/{path}", headers={"HX-Request": "true"})
    assert response.status_code in (200, 204), response.text
    return response


def _run(http, case, key="summary"):
    _post(http, case, f"stages/{key}/run")
    return follow(http, f"/cases/{case.pk}/stages/{key}/events")[0]


def test_a_busy_provider_is_retried_and_the_clinician_sees_it(alice_http, case, simulator):
    simulator.configure(faults=["429", "500"])
    view = _run(alice_http, case)
    # Seen in the first snapshot or a later event, as the page happened to connect.
    assert any("retrying (2 of 4)" in e.data for e in view.events)
    assert any("retrying (3 of 4)" in e.data for e in view.events)
    run = StageRun.objects.get()
    assert run.status == "complete" and run.notice == ""
    assert len(simulator.requests()) == 3
    assert view.streamed("reasoning") == simulator.sent()[-1]["reasoning"] == run.reasoning


def test_a_provider_that_stays_down_ends_in_error_with_a_reference_in_the_log(
    alice_http, case, simulator, server_log
):
    simulator.configure(faults=["500"] * 4)
    view = _run(alice_http, case)
    run = StageRun.objects.get()
    assert (run.status, run.error_code) == ("error", "provider_error")
    assert len(simulator.requests()) == 4
    reference = re.search(r"Reference (\w{8})", run.error_message)[1]
    assert reference in view.events[-1].data
    assert "Traceback" not in view.events[-1].data
    wait_until(lambda: reference in server_log.read_text())
    assert "Chest pain" not in server_log.read_text(), "no PHI in the logs"


@pytest.mark.parametrize(
    ("status", "says"),
    [
        ("401", "The AI provider refused the credentials (check LLM_API_KEY)."),
        ("400", "The AI provider rejected the request."),
    ],
)
def test_a_provider_that_refuses_the_request_is_not_retried_and_says_why(
    alice_http, case, simulator, status, says
):
    simulator.configure(faults=[status])
    view = _run(alice_http, case)
    run = StageRun.objects.get()
    assert run.status == "error" and run.error_message.startswith(says)
    assert len(simulator.requests()) == 1
    shown = " ".join(event.data for event in view.events)  # the end may precede the page
    assert says in shown and "simulated" not in shown


def test_a_provider_that_never_starts_is_retried_after_the_first_token_timeout(
    alice_http, case, simulator
):
    simulator.configure(faults=["stall@0"])
    _run(alice_http, case)
    assert StageRun.objects.get().status == "complete"
    assert len(simulator.requests()) == 2


def test_a_stall_mid_stream_keeps_the_text_and_continue_finishes_it(alice_http, case, simulator):
    # The first stall is carried on without a click (LLM_AUTO_CONTINUE=1); the second ends it.
    simulator.configure(faults=["stall@40", "stall@5"])
    view = _run(alice_http, case)
    failed = StageRun.objects.get()
    assert (failed.status, failed.error_code) == ("error", "idle_timeout")
    first, second = simulator.sent()
    assert failed.reasoning == first["reasoning"] + second["reasoning"]
    assert view.streamed("reasoning") == failed.reasoning
    assert 'data-action="continue"' in view.events[-1].data
    assert 'data-action="retry"' in view.events[-1].data

    _post(alice_http, case, "stages/summary/continue")
    view = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")[0]

    rest = simulator.sent()[-1]
    continued = StageRun.objects.latest("queued_at")
    assert (continued.status, continued.continued_from) == ("complete", failed)
    assert continued.reasoning == failed.reasoning + rest["reasoning"], "nothing lost or repeated"
    assert continued.summary == rest["summary"]
    assert view.streamed("reasoning") == continued.reasoning
    assert view.streamed("summary") == continued.summary
    assert simulator.requests()[-1]["messages"][-2]["content"].startswith("<detailed>")


def test_a_dropped_stream_can_be_retried_and_the_failed_run_stays_readable(
    alice_http, alice_client, case, simulator
):
    simulator.configure(faults=["drop@25", "drop@5"])  # the first is carried on without a click
    _run(alice_http, case)
    _post(alice_http, case, "stages/summary/run")
    view = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")[0]
    assert view.streamed("reasoning") == simulator.sent()[-1]["reasoning"]
    assert list(StageRun.objects.order_by("queued_at").values_list("status", flat=True)) == [
        "error", "complete"]  # fmt: skip
    assert "Earlier runs (1)" in alice_client.get(f"/cases/{case.pk}/").text


def test_stop_ends_a_running_stage_and_keeps_its_text(alice_http, case, simulator):
    simulator.configure(tps=20, words=200)
    _post(alice_http, case, "stages/summary/run")
    wait_until(lambda: StageRun.objects.get().reasoning)
    _post(alice_http, case, "stages/summary/cancel")
    view = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")[0]

    run = StageRun.objects.get()
    assert (run.status, run.error_message) == ("cancelled", "Stopped by the clinician.")
    assert run.reasoning and squash(view.text("reasoning")) == squash(run.reasoning)
    assert simulator.sent()[0]["reasoning"].startswith(run.reasoning)
    assert not simulator.requests()[0]["complete"]
    time.sleep(0.5)
    assert StageRun.objects.get().reasoning == run.reasoning, "nothing is appended after a stop"


def test_stop_ends_a_group_and_the_stages_after_it(alice_http, case, simulator):
    simulator.configure(tps=20, words=200)
    _post(alice_http, case, "groups/assessment/run")
    wait_until(lambda: StageRun.objects.filter(status="running").exists())
    _post(alice_http, case, "groups/assessment/cancel")
    follow(alice_http, f"/cases/{case.pk}/groups/assessment/events")
    statuses = dict(StageRun.objects.values_list("stage_key", "status"))
    assert statuses == {"summary": "cancelled", "differential": "cancelled"}
    assert (
        StageRun.objects.get(stage_key="differential").error_message == "Stopped by the clinician."
    )


def test_a_failed_reply_can_be_retried_and_stop_ends_a_reply(alice_http, case, simulator):
    simulator.configure(faults=["drop@5", "drop@5"])  # the first is carried on without a click
    alice_http.post(f"/cases/{case.pk}/chat", data={"message": "Aspirin?"})
    failed = ChatMessage.objects.get(role="assistant")
    follow(alice_http, f"/cases/{case.pk}/chat/{failed.pk}/events")
    failed.refresh_from_db()
    first, second = simulator.sent()
    assert failed.status == "error" and failed.content == first["content"] + second["content"]

    simulator.configure(tps=10, words=200)
    _post(alice_http, case, f"chat/{failed.pk}/retry")
    reply = ChatMessage.objects.filter(role="assistant").latest("queued_at")
    wait_until(lambda: ChatMessage.objects.get(pk=reply.pk).content)
    _post(alice_http, case, f"chat/{reply.pk}/cancel")
    view = follow(alice_http, f"/cases/{case.pk}/chat/{reply.pk}/events")[0]
    reply.refresh_from_db()
    assert reply.status == "cancelled" and reply.content
    assert squash(view.text("reply", str(reply.pk))) == squash(reply.content)
    assert simulator.sent()[-1]["content"].startswith(reply.content)
    conversation = simulator.requests()[-1]["messages"][1:]
    assert conversation == [{"role": "user", "content": "Aspirin?"}], "failed replies stay out"


def test_stop_on_a_stage_waiting_in_a_group_ends_it_at_once(alice_http, case, simulator):
    simulator.configure(tps=40, words=60)
    _post(alice_http, case, "groups/assessment/run")
    wait_until(lambda: StageRun.objects.filter(stage_key="summary", status="running").exists())

    _post(alice_http, case, "stages/differential/cancel")

    differential = StageRun.objects.get(stage_key="differential")
    assert (differential.status, differential.error_message) == (
        "cancelled",
        "Stopped by the clinician.",
    )
    page = alice_http.get(f"/cases/{case.pk}/").text
    assert "Assessment: stage 1 of 2" in page, "the stage still running is the first"
    view = follow(alice_http, f"/cases/{case.pk}/groups/assessment/events")[0]
    statuses = dict(StageRun.objects.values_list("stage_key", "status"))
    assert statuses == {"summary": "complete", "differential": "cancelled"}
    assert "Differential diagnosis was not run." in " ".join(view.events[-1].data.split())
    assert len(simulator.requests()) == 1, "the stopped stage never reached the provider"
