"""The `streaming` flag and batch mode: one non-streaming provider call per generation,
the whole text at once; and the automatic fallback to it when a provider cannot stream."""

import httpx
import pytest
from django.contrib.auth.models import Group
from waffle.models import Flag

from tests.conftest import log_in, scrape, wait_until
from tests.streams import follow
from workflow.models import ChatMessage, ClinicalCase, StageRun

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}


def _streaming_only_for(*users):
    flag = Flag.objects.create(name="streaming", everyone=None)
    flag.users.set(users)


def test_without_a_flag_row_everyone_streams(alice_http, case, simulator):
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    view, _ = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    assert "delta" in view.names
    assert case.stage_runs.get().mode == "stream"
    assert simulator.requests()[-1]["stream"] is True


def test_with_the_flag_off_a_stage_and_a_reply_come_whole_in_one_call(
    alice_http, bob, case, simulator
):
    _streaming_only_for(bob)
    page = alice_http.get(f"/cases/{case.pk}/").text
    assert 'data-stage-key="summary" data-status="idle" data-mode="stream"' in page

    simulator.configure(ttft=0.5)
    started = alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    assert "Writing the whole answer" in started.text
    view, _ = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    run = case.stage_runs.get()
    sent = simulator.sent()[-1]
    assert view.names.count("delta") <= 1  # the whole text at once, nothing word by word
    assert (run.mode, run.status) == ("batch", "complete")
    assert (run.reasoning, run.summary) == (sent["reasoning"], sent["summary"])
    assert "stream" not in simulator.requests()[-1]
    assert 'data-mode="batch"' in alice_http.get(f"/cases/{case.pk}/").text

    alice_http.post(f"/cases/{case.pk}/chat", data={"message": "Why?"}, headers=HTMX)
    reply = ChatMessage.objects.get(role="assistant")
    view, _ = follow(alice_http, f"/cases/{case.pk}/chat/{reply.pk}/events")
    reply.refresh_from_db()
    assert view.names.count("delta") <= 1
    assert (reply.mode, reply.status, reply.content) == (
        "batch", "complete", simulator.sent()[-1]["content"]
    )  # fmt: skip


def test_a_batch_stage_stops_and_retries_like_a_streamed_one(alice_http, bob, case, simulator):
    _streaming_only_for(bob)
    simulator.configure(ttft=20)
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    wait_until(lambda: len(simulator.requests()) == 1)
    alice_http.post(f"/cases/{case.pk}/stages/summary/cancel", headers=HTMX)
    stopped = case.stage_runs.filter(status="cancelled")
    wait_until(stopped.exists, 5, "Stop ends a batch stage at once")
    simulator.configure(ttft=0.05)
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    assert case.stage_runs.latest("queued_at").status == "complete"


def test_a_ward_streams_while_the_rest_of_the_hospital_gets_batch(alice, bob, server, simulator):
    ward = Group.objects.create(name="Ward 7")
    ward.user_set.add(alice)
    Flag.objects.create(name="streaming", everyone=None).groups.add(ward)
    modes = {}
    for user in (alice, bob):
        case = ClinicalCase.objects.create(owner=user, age=40, chief_complaint="Dyspnoea")
        with httpx.Client(base_url=server, timeout=30) as http:
            log_in(http, user)
            http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
            follow(http, f"/cases/{case.pk}/stages/summary/events")
        modes[user.username] = case.stage_runs.get().mode
    assert modes == {"alice": "stream", "bob": "batch"}


def test_a_percentage_rollout_keeps_each_browser_on_its_side(alice, case, server, simulator):
    Flag.objects.create(name="streaming", everyone=None, percent=50)
    sides = set()
    for _ in range(30):  # until both sides are seen: all on one side 29 times is 2**-29
        with httpx.Client(base_url=server, timeout=30) as browser:
            log_in(browser, alice)
            first, again = (_run_summary(browser, case) for _ in range(2))
            assert first == again, "a browser stays on its side of the rollout"
            assert browser.cookies["dwf_streaming"] == ("True" if first == "stream" else "False")
        sides.add(first)
        if sides == {"stream", "batch"}:
            break
    assert sides == {"stream", "batch"}


def _run_summary(http: httpx.Client, case) -> str:
    """The mode a run of the summary stage was made in."""
    http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    follow(http, f"/cases/{case.pk}/stages/summary/events")
    return case.stage_runs.latest("queued_at").mode


def test_a_clinician_whose_flag_flips_mid_stage_keeps_that_stages_mode(
    alice_http, alice, case, simulator
):
    simulator.configure(tps=20, words=60)
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    _streaming_only_for()  # off for everyone, while the stage streams
    view, _ = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    assert "delta" in view.names and case.stage_runs.get().mode == "stream"
    alice_http.post(f"/cases/{case.pk}/stages/differential/run", headers=HTMX)
    assert case.stage_runs.get(stage_key="differential").mode == "batch"  # from the next


@pytest.mark.parametrize(
    "faults",
    [["nostream"], ["drop@0"] * 4, ["stall@0"] * 4],
    ids=[
        "the provider refuses stream",
        "every attempt drops before the first token",
        "every attempt times out before the first token",
    ],
)
def test_a_provider_that_cannot_stream_gets_one_whole_request(
    alice_http, case, simulator, server, faults
):
    fallbacks = ("medhastra_fallbacks_total", (("kind", "batch"),))
    before = scrape(server).get(fallbacks, 0)
    simulator.configure(faults=faults)
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    view, _ = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    run = case.stage_runs.get()
    requests = simulator.requests()
    assert [r.get("stream", False) for r in requests] == [True] * len(faults) + [False]
    assert (run.mode, run.status) == ("batch", "complete")
    assert run.reasoning == simulator.sent()[-1]["reasoning"]
    assert "written whole instead" in " ".join(event.data for event in view.events)
    assert scrape(server)[fallbacks] == before + 1


@pytest.mark.parametrize(
    "faults", [["429"] * 4, ["500"] * 4, ["500", "500", "500", "drop@0"]],
    ids=["busy", "failing", "failing, then dropped"],
)  # fmt: skip
def test_a_busy_or_failing_provider_keeps_its_retries_and_never_falls_back(
    alice_http, case, simulator, faults
):
    simulator.configure(faults=faults)
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    assert all(request["stream"] for request in simulator.requests())
    assert StageRun.objects.get().status == "error"


def test_a_refusal_quoting_case_text_about_a_stream_is_not_a_refusal_to_stream(
    alice_http, alice, simulator
):
    case = ClinicalCase.objects.create(owner=alice, chief_complaint="Poor urine stream")
    simulator.configure(faults=["400"])  # its message quotes the prompt back
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    assert [run.status for run in case.stage_runs.all()] == ["error"]
    assert len(simulator.requests()) == 1, "no whole request after it"


def test_a_group_with_streaming_off_makes_each_stage_whole_in_turn(alice_http, case, simulator):
    _streaming_only_for()
    alice_http.post(f"/cases/{case.pk}/groups/assessment/run", headers=HTMX)
    follow(alice_http, f"/cases/{case.pk}/groups/assessment/events")
    runs = list(case.stage_runs.order_by("pk"))
    assert [(run.stage_key, run.mode, run.status) for run in runs] == [
        ("summary", "batch", "complete"),
        ("differential", "batch", "complete"),
    ]
    assert not any(request.get("stream") for request in simulator.requests())
    assert runs[0].summary in simulator.requests()[1]["messages"][-1]["content"]  # built on


def test_with_streaming_off_run_all_and_a_re_run_mark_later_stages_stale(
    alice_http, case, simulator
):
    _streaming_only_for()
    simulator.configure(words=20)
    alice_http.post(f"/cases/{case.pk}/groups/all/run", headers=HTMX)
    follow(alice_http, f"/cases/{case.pk}/groups/all/events")
    assert {(run.mode, run.status) for run in case.stage_runs.all()} == {("batch", "complete")}
    assert case.stage_runs.count() == 6

    alice_http.post(f"/cases/{case.pk}/stages/differential/run", headers=HTMX)
    follow(alice_http, f"/cases/{case.pk}/stages/differential/events")
    statuses = {key: run.status for key, run in case.latest_runs().items()}
    assert statuses == {
        "summary": "complete", "differential": "complete", "diagnostics": "stale",
        "risk": "stale", "management": "stale", "note": "stale"}  # fmt: skip


def test_with_streaming_off_a_failed_stage_and_reply_are_retried_whole(alice_http, case, simulator):
    _streaming_only_for()
    simulator.configure(faults=["400"])
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    view, _ = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    assert case.stage_runs.get().status == "error"
    assert 'data-action="retry"' in view.events[-1].data
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)  # Retry
    follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    retried = case.stage_runs.latest("queued_at")
    assert (retried.mode, retried.status) == ("batch", "complete")
    assert retried.summary == simulator.sent()[-1]["summary"]

    simulator.configure(faults=["400"])
    alice_http.post(f"/cases/{case.pk}/chat", data={"message": "Why?"}, headers=HTMX)
    failed = ChatMessage.objects.get(role="assistant")
    follow(alice_http, f"/cases/{case.pk}/chat/{failed.pk}/events")
    assert ChatMessage.objects.get(pk=failed.pk).status == "error"
    alice_http.post(f"/cases/{case.pk}/chat/{failed.pk}/retry", headers=HTMX)
    reply = ChatMessage.objects.filter(role="assistant").latest("queued_at")
    follow(alice_http, f"/cases/{case.pk}/chat/{reply.pk}/events")
    reply.refresh_from_db()
    assert (reply.mode, reply.status, reply.content) == (
        "batch", "complete", simulator.sent()[-1]["content"]
    )  # fmt: skip
    assert not any(request.get("stream") for request in simulator.requests())
