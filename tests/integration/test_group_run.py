"""Group runs: one POST runs a group's stages in order, one stream carries them all."""

import time

import pytest

from tests.streams import follow, routed, squash
from workflow.models import StageRun, WorkflowRun

pytestmark = pytest.mark.django_db(transaction=True)


def _run_group(http, case, group):
    response = http.post(f"/cases/{case.pk}/groups/{group}/run", headers={"HX-Request": "true"})
    assert response.status_code == 200
    return f"/cases/{case.pk}/groups/{group}/events"


def _run_stage(http, case, stage):
    response = http.post(f"/cases/{case.pk}/stages/{stage}/run", headers={"HX-Request": "true"})
    assert response.status_code == 200
    return f"/cases/{case.pk}/stages/{stage}/events"


def _sent(simulator) -> dict[str, dict[str, str]]:
    """What the simulator sent for each stage prompt, as the app keeps it, by task title."""
    sent = {}
    for request in simulator.requests():
        prompt = request["messages"][-1]["content"]
        if "# Your task: " in prompt:
            sent[prompt.split("# Your task: ")[1].split("\n")[0]] = routed(request)
    return sent


def test_a_group_runs_its_stages_in_order_with_the_earlier_summaries(alice_http, case, simulator):
    view, _ = follow(alice_http, _run_group(alice_http, case, "assessment"))

    runs = list(StageRun.objects.filter(case=case).order_by("started_at"))
    assert [(r.stage_key, r.status) for r in runs] == [
        ("summary", "complete"), ("differential", "complete")]  # fmt: skip
    assert runs[0].finished_at <= runs[1].started_at
    prompts = [r["messages"][-1]["content"] for r in simulator.requests()]
    assert "# Your task: Problem representation" in prompts[0]
    assert "# Your task: Differential diagnosis" in prompts[1]
    assert runs[0].summary in prompts[1], "the differential is built on the summary"
    assert runs[1].inputs == {"summary": runs[0].pk}

    sent = _sent(simulator)
    for run in runs:
        texts = sent[run.stage.title]
        assert view.streamed("reasoning", run.stage_key) == texts["reasoning"] == run.reasoning
        assert view.streamed("summary", run.stage_key) == texts["summary"] == run.summary
        assert squash(view.text("summary", run.stage_key)) == squash(run.summary)
    assert WorkflowRun.objects.get().finished_at is not None
    stage_events = [e for e in view.events if e.event == "stage"]
    assert any("Assessment: stage 2 of 2" in e.data for e in stage_events)


def test_a_reconnect_mid_group_loses_and_repeats_nothing(alice_http, case, simulator):
    simulator.configure(tps=60, words=50)
    url = _run_group(alice_http, case, "assessment")
    first, _ = follow(alice_http, url, stop_after=12)
    time.sleep(1)

    view, _ = follow(alice_http, url, first, last_event_id=first.events[-1].id)

    ids = [int(e.id) for e in view.events]
    assert ids == sorted(ids)
    sent = _sent(simulator)
    for key, title in (
        ("summary", "Problem representation"),
        ("differential", "Differential diagnosis"),
    ):
        assert view.streamed("reasoning", key) == sent[title]["reasoning"]
        assert view.streamed("summary", key) == sent[title]["summary"]


def test_a_failed_stage_stops_the_group_and_says_why(alice_http, case, simulator):
    simulator.configure(faults=["500"] * 4)  # every attempt
    view, _ = follow(alice_http, _run_group(alice_http, case, "assessment"))
    statuses = dict(StageRun.objects.values_list("stage_key", "status"))
    assert statuses == {"summary": "error", "differential": "cancelled"}
    said = " ".join(view.events[-1].data.split())
    assert (
        "Differential diagnosis was not run.</strong> Problem representation did not complete."
        in said
    )


def test_run_all_runs_the_six_stages_in_order(alice_http, case, simulator):
    simulator.configure(words=20)
    follow(alice_http, _run_group(alice_http, case, "all"))
    runs = StageRun.objects.filter(case=case).order_by("started_at")
    assert [r.stage_key for r in runs] == [
        "summary", "differential", "diagnostics", "risk", "management", "note"]  # fmt: skip
    assert all(r.status == "complete" for r in runs)
    note_prompt = simulator.requests()[-1]["messages"][-1]["content"]
    for run in runs[:5]:
        assert run.summary in note_prompt


def test_a_group_runs_the_earlier_stages_it_needs_first(alice_http, case, simulator):
    follow(alice_http, _run_group(alice_http, case, "plan"))
    runs = StageRun.objects.filter(case=case).order_by("pk")
    assert [(r.stage_key, r.status) for r in runs] == [
        ("summary", "complete"),
        ("differential", "complete"),
        ("risk", "complete"),
        ("management", "complete"),
        ("note", "complete"),
    ]
    assert {run.workflow_run.group_key for run in runs} == {"plan"}


def test_a_group_is_refused_while_one_of_its_stages_runs(alice_http, case, simulator):
    simulator.configure(tps=10)
    _run_group(alice_http, case, "assessment")
    response = alice_http.post(
        f"/cases/{case.pk}/groups/assessment/run", headers={"HX-Request": "true"}
    )
    assert "Problem representation is already running." in response.text
    assert WorkflowRun.objects.count() == 1


def test_a_stage_whose_earlier_stages_have_not_run_runs_them_first_as_one_stream(
    alice_http, case, simulator
):
    response = alice_http.post(
        f"/cases/{case.pk}/stages/diagnostics/run", headers={"HX-Request": "true"}
    )
    url = f"/cases/{case.pk}/groups/diagnostics/events"
    assert url in response.text  # the page follows one stream for the three
    view, _ = follow(alice_http, url)

    runs = list(StageRun.objects.filter(case=case).order_by("pk"))
    assert [(r.stage_key, r.status) for r in runs] == [
        ("summary", "complete"),
        ("differential", "complete"),
        ("diagnostics", "complete"),
    ]
    assert runs[2].inputs == {"summary": runs[0].pk, "differential": runs[1].pk}
    assert any("Up to diagnostic workup: stage 3 of 3" in e.data for e in view.events)
    for run in runs:
        assert view.streamed("summary", run.stage_key) == run.summary


def test_run_all_skips_the_stages_complete_and_up_to_date(alice_http, case, simulator):
    follow(alice_http, _run_group(alice_http, case, "assessment"))
    follow(alice_http, _run_stage(alice_http, case, "summary"))  # the differential goes stale

    follow(alice_http, _run_group(alice_http, case, "all"))
    runs = StageRun.objects.filter(case=case, workflow_run__group_key="all").order_by("pk")
    assert [run.stage_key for run in runs] == [
        "differential", "diagnostics", "risk", "management", "note"]  # fmt: skip

    response = alice_http.post(
        f"/cases/{case.pk}/groups/assessment/run", headers={"HX-Request": "true"}
    )
    assert "Assessment: every stage is complete and up to date." in response.text
    assert StageRun.objects.filter(case=case, stage_key="summary").count() == 2
