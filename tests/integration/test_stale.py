"""The clinician in the loop: what changed makes later conclusions stale; history stays."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tests.conftest import run_async, wait_until
from tests.streams import follow, squash
from workflow import runner
from workflow.models import StageRun, Status

pytestmark = pytest.mark.django_db(transaction=True)


def _run(http, case, kind, key):
    http.post(f"/cases/{case.pk}/{kind}/{key}/run")
    follow(http, f"/cases/{case.pk}/{kind}/{key}/events")


def _statuses(case) -> dict[str, str]:
    return {key: run.status for key, run in case.latest_runs().items()}


def test_re_running_a_stage_makes_the_stages_that_used_it_stale(
    alice_http, alice_client, case, simulator
):
    _run(alice_http, case, "groups", "assessment")
    _run(alice_http, case, "stages", "risk")
    _run(alice_http, case, "stages", "differential")
    assert _statuses(case) == {"summary": "complete", "differential": "complete", "risk": "stale"}
    page = alice_client.get(f"/cases/{case.pk}/").text
    assert page.count("Differential diagnosis was run again after this was written.") == 2
    assert page.count('<span class="badge">earlier run</span>') == 1  # the first differential


def test_editing_the_case_makes_every_stage_stale_and_keeps_history(
    alice_http, alice_client, case, simulator
):
    _run(alice_http, case, "groups", "assessment")
    response = alice_client.post(
        f"/cases/{case.pk}/edit/",
        {"age": "58", "sex": "male", "chief_complaint": "Chest pain for 2 hours",
         "vitals": "HR 130, BP 80/50"},
    )  # fmt: skip
    assert response.status_code == 302
    assert _statuses(case) == {"summary": "stale", "differential": "stale"}
    page = alice_client.get(f"/cases/{case.pk}/").text
    assert 'data-stage-key="differential" data-status="stale"' in page
    assert page.count("The case was edited after this was written.") == 4  # both panels

    _run(alice_http, case, "stages", "summary")
    page = alice_client.get(f"/cases/{case.pk}/").text
    assert "Earlier runs (1)" in page
    assert StageRun.objects.filter(stage_key="summary").count() == 2
    assert "HR 130, BP 80/50" in simulator.requests()[-1]["messages"][-1]["content"]


def test_saving_an_unchanged_case_changes_nothing(alice_http, alice_client, case, simulator):
    _run(alice_http, case, "stages", "summary")
    alice_client.post(
        f"/cases/{case.pk}/edit/",
        {"age": "58", "sex": "male", "chief_complaint": "Chest pain for 2 hours",
         "vitals": "HR 104, BP 150/90"},
    )  # fmt: skip
    assert _statuses(case) == {"summary": "complete"}


def test_a_stale_stage_is_run_again_before_the_ones_after_it(alice_http, case, simulator):
    _run(alice_http, case, "stages", "summary")
    case.mark_all_stale()
    alice_http.post(f"/cases/{case.pk}/stages/differential/run", headers={"HX-Request": "true"})
    follow(alice_http, f"/cases/{case.pk}/groups/differential/events")
    assert _statuses(case) == {"summary": "complete", "differential": "complete"}
    assert case.stage_runs.filter(stage_key="summary").count() == 2


def test_the_case_list_shows_progress_and_last_activity(alice_http, alice_client, case, simulator):
    _run(alice_http, case, "groups", "assessment")
    page = alice_client.get("/").text
    assert "2 / 6 stages complete" in page
    assert "0\xa0minutes ago" in page


def test_a_stage_running_while_the_case_is_edited_ends_stale_and_its_group_ends(
    alice_http, alice_client, case, simulator
):
    simulator.configure(tps=40, words=80)
    alice_http.post(f"/cases/{case.pk}/groups/assessment/run")
    running = StageRun.objects.filter(case=case, stage_key="differential", status="running")
    wait_until(running.exists, 20, "the differential never started")
    alice_client.post(
        f"/cases/{case.pk}/edit/",
        {"age": "58", "sex": "male", "chief_complaint": "Chest pain for 2 hours",
         "vitals": "HR 130, BP 80/50"},
    )  # fmt: skip

    view, _ = follow(alice_http, f"/cases/{case.pk}/groups/assessment/events")

    assert view.names[-1] == "done"
    assert _statuses(case) == {"summary": "stale", "differential": "stale"}
    differential = StageRun.objects.get(case=case, stage_key="differential")
    assert squash(view.text("reasoning", "differential")) == squash(differential.reasoning)
    assert differential.reasoning, "what it generated is kept"


def test_a_stage_that_read_the_case_before_an_edit_ends_stale(case):
    """However short the moment between reading the case and starting to generate."""
    [run], _ = case.start_stage_runs(("summary",))
    run = StageRun.objects.select_related("case").get()  # the facts its prompt is built from
    case.vitals = "HR 130, BP 80/50"
    case.save()
    run.started_at = timezone.now()

    run_async(run.end(Status.COMPLETE))

    assert StageRun.objects.get().status == "stale"


def test_a_group_stage_whose_input_went_stale_before_it_started_is_not_run(case):
    (summary, differential), _ = case.start_stage_runs(("summary", "differential"), "assessment")
    StageRun.objects.filter(pk=summary.pk).update(status="complete", summary="A summary.")
    case.mark_all_stale()  # the clinician edits the case between the two stages

    status = run_async(runner._generate_stage(differential))

    differential.refresh_from_db()
    assert status == "error" and differential.error_code == "not_run"
    assert differential.error_message == (
        "Problem representation went out of date first: run Problem representation again."
    )
    assert differential.reasoning == ""


def test_a_stage_ending_while_its_input_is_being_run_again_ends_stale(case):
    """The start's transaction holds the case: the ending waits for it, then sees it."""
    [summary], _ = case.start_stage_runs(("summary",))
    StageRun.objects.filter(pk=summary.pk).update(status="complete", summary="A summary.")
    [differential], _ = case.start_stage_runs(("differential",))
    StageRun.objects.filter(pk=differential.pk).update(
        status="running", inputs={"summary": summary.pk}
    )
    differential = StageRun.objects.select_related("case").get(pk=differential.pk)
    started, go_on = threading.Event(), threading.Event()

    def run_summary_again():
        try:
            with transaction.atomic():
                case.start_stage_runs(("summary",))
                started.set()
                go_on.wait(timeout=5)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(run_summary_again)
        assert started.wait(timeout=5)
        threading.Timer(0.5, go_on.set).start()
        run_async(differential.end(Status.COMPLETE))
        starting.result()

    assert StageRun.objects.get(pk=differential.pk).status == "stale"
