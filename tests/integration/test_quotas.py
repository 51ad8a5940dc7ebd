"""Per-clinician limits: generations running or queued at once, a real provider's tokens
in a day, the size of each case field and chat message. Each refusal says which limit
was hit and when it frees up, in the page."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from tests.conftest import wait_until
from workflow.models import CannotStart, ChatMessage, ClinicalCase, StageRun, Status
from workflow.stages import STAGES

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}


def _cases(owner, n):
    return [ClinicalCase.objects.create(owner=owner, chief_complaint=f"Case {i}") for i in range(n)]


def test_run_all_on_a_third_case_is_refused_until_one_of_the_others_is_stopped(
    alice_http, alice, bob, simulator
):
    simulator.configure(tps=2, words=200)  # everything stays running or queued meanwhile
    first, second, third = _cases(alice, 3)
    for case in (first, second):
        assert alice_http.post(f"/cases/{case.pk}/groups/all/run", headers=HTMX).is_success
    assert StageRun.objects.filter(status__in=("queued", "running")).count() == 12

    refused = alice_http.post(f"/cases/{third.pk}/stages/summary/run", headers=HTMX)
    assert refused.status_code == 200
    assert "Limit reached: you have 12 generations running or queued" in refused.text
    assert "once one of them has finished or been stopped" in refused.text
    asked = alice_http.post(f"/cases/{third.pk}/chat", data={"message": "Why?"}, headers=HTMX)
    assert "Limit reached" in asked.text
    assert not third.stage_runs.exists() and not ChatMessage.objects.exists()

    # Another clinician is not held up by alice's work.
    bobs = ClinicalCase.objects.create(owner=bob, chief_complaint="Bob's case")
    assert ClinicalCase.objects.visible_to(bob).count() == 1
    assert bobs.start_stage_runs(("summary",))[0]

    alice_http.post(f"/cases/{second.pk}/groups/all/cancel", headers=HTMX)
    started = alice_http.post(f"/cases/{third.pk}/stages/summary/run", headers=HTMX)
    assert "Limit reached" not in started.text
    assert third.stage_runs.get().status in ("queued", "running", "complete")
    alice_http.post(f"/cases/{first.pk}/groups/all/cancel", headers=HTMX)
    alice_http.post(f"/cases/{third.pk}/stages/summary/cancel", headers=HTMX)


def _start_both_at_once(cases) -> list[str]:
    ready, said = threading.Barrier(len(cases)), []

    def start(case):
        ready.wait()
        try:
            case.start_stage_runs(("summary",))
            said.append("started")
        except CannotStart as refusal:
            said.append(str(refusal)[:14])
        finally:
            connection.close()

    threads = [threading.Thread(target=start, args=(case,)) for case in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(said)


def test_starts_at_once_on_two_cases_count_each_other(alice, settings):
    settings.MAX_ACTIVE_GENERATIONS = 1
    cases = _cases(alice, 2)
    for _ in range(5):
        assert _start_both_at_once(cases) == ["Limit reached:", "started"]
        StageRun.objects.update(status=Status.CANCELLED)


def test_a_stopped_generation_counts_against_the_budget(alice_http, case, simulator, settings):
    simulator.configure(tps=10, words=200)
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    run = case.stage_runs.get()
    wait_until(lambda: len(StageRun.objects.get(pk=run.pk).reasoning) > 40)
    alice_http.post(f"/cases/{case.pk}/stages/summary/cancel", headers=HTMX)
    wait_until(lambda: StageRun.objects.get(pk=run.pk).status == "cancelled")
    run.refresh_from_db()
    assert run.prompt_tokens > 20 and run.completion_tokens > 5  # likely: no usage came


def _spent(case, tokens, engine="simulator"):
    StageRun.objects.create(
        case=case, stage_key="summary", status=Status.COMPLETE, engine=engine,
        prompt_tokens=tokens // 2, completion_tokens=tokens - tokens // 2,
    )  # fmt: skip


def test_a_used_up_daily_budget_is_refused_with_when_it_renews(alice_http, alice, simulator):
    case, other = _cases(alice, 2)
    _spent(other, 399_990)
    _spent(other, 10_000_000, engine="offline demo engine — not an LLM")  # costs nothing
    assert "Daily limit" not in alice_http.post(f"/cases/{case.pk}/chat", data={"message": "A?"},
                                                headers=HTMX).text  # fmt: skip
    _spent(other, 10)

    refused = alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    assert "Daily limit reached: your generations used 400,000 of the 400,000 tokens" in (
        refused.text
    )
    assert "renews at 00:00 UTC, in" in refused.text
    assert not case.stage_runs.exists()


def test_yesterdays_tokens_renew_but_a_generation_running_since_yesterday_still_counts(
    alice, settings
):
    settings.MAX_ACTIVE_GENERATIONS = 1
    case, other = _cases(alice, 2)
    _spent(other, 10_000_000)
    StageRun.objects.update(queued_at=timezone.now() - timedelta(days=1))
    (started,), _ = case.start_stage_runs(("summary",))  # yesterday's budget renewed
    started.delete()

    StageRun.objects.create(case=other, stage_key="differential", status=Status.RUNNING,
                            queued_at=timezone.now() - timedelta(days=1))  # fmt: skip
    with pytest.raises(CannotStart, match="you have 1 generations running or queued"):
        case.start_stage_runs(("summary",))


def test_the_offline_demo_engine_is_exempt_from_the_budget(alice, settings):
    settings.LLM_BASE_URL = settings.LLM_API_KEY = None
    case, other = _cases(alice, 2)
    _spent(other, 10_000_000)
    runs, _ = case.start_stage_runs(tuple(STAGES))
    assert len(runs) == 6


def test_an_oversized_case_field_is_a_form_error_and_saves_nothing(alice):
    client = Client()
    client.force_login(alice)
    response = client.post(
        "/cases/new/", {"chief_complaint": "Fever", "history": "x" * 5001, "exam": "ok"}
    )
    assert response.status_code == 200
    assert "Ensure this value has at most 5000 characters (it has 5001)." in response.text
    assert 'maxlength="5000"' in response.text  # the browser stops the typing there too
    assert not ClinicalCase.objects.exists()


def test_an_oversized_chat_message_is_refused(alice_http, case, simulator):
    response = alice_http.post(f"/cases/{case.pk}/chat", data={"message": "x" * 4001},
                               headers=HTMX)  # fmt: skip
    assert "at most 4000 characters" in response.text
    assert not ChatMessage.objects.exists()
