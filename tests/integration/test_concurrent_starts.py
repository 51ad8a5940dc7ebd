"""Two starts at once (two tabs, a double click): one runs, the other is told why not."""

import threading

import httpx
import pytest
from django.db import transaction

from tests.conftest import wait_until
from workflow.models import ACTIVE, CannotStart, ChatMessage, ClinicalCase, StageRun

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 6


def _at_once(alice_http, path: str, data=None) -> list[httpx.Response]:
    """POST `path` from two clients released at the same moment."""
    barrier = threading.Barrier(2)
    responses: list[httpx.Response] = []

    def post():
        with httpx.Client(
            base_url=alice_http.base_url, cookies=alice_http.cookies,
            headers={**alice_http.headers, "HX-Request": "true"}, timeout=30,
        ) as http:  # fmt: skip
            barrier.wait()
            responses.append(http.post(path, data=data))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


# The provider takes its time, so the first start is still running however late the
# second request lands on a busy machine; each round stops it.
SLOW_PROVIDER = {"ttft": 30}


def test_a_stage_started_twice_at_once_runs_once(alice_http, case, simulator):
    simulator.configure(**SLOW_PROVIDER)
    for round in range(1, ROUNDS + 1):
        responses = _at_once(alice_http, f"/cases/{case.pk}/stages/summary/run")
        assert [r.status_code for r in responses] == [200, 200]
        assert sum("already running" in r.text for r in responses) == 1
        assert StageRun.objects.count() == round
        alice_http.post(f"/cases/{case.pk}/stages/summary/cancel")
        wait_until(lambda: not StageRun.objects.filter(status__in=ACTIVE).exists(), 15)


def test_a_question_sent_twice_at_once_is_answered_once(alice_http, case, simulator):
    simulator.configure(**SLOW_PROVIDER)
    replies = ChatMessage.objects.filter(role="assistant")
    for round in range(1, ROUNDS + 1):
        responses = _at_once(alice_http, f"/cases/{case.pk}/chat", {"message": "And the ECG?"})
        assert [r.status_code for r in responses] == [200, 200]
        assert sum("Wait for the current reply" in r.text for r in responses) == 1
        assert replies.count() == round
        alice_http.post(f"/cases/{case.pk}/chat/{replies.latest('queued_at').pk}/cancel")
        wait_until(lambda: not replies.filter(status__in=ACTIVE).exists(), 15)


def test_a_start_reasons_about_the_case_as_it_is_when_it_starts(case):
    """The case a request read may be edited, or deleted, before its start takes the lock
    (another tab saved it): the first run's prompt comes from the case as it is then."""
    as_read = ClinicalCase.objects.get(pk=case.pk)
    ClinicalCase.objects.filter(pk=case.pk).update(chief_complaint="Syncope on exertion", age=81)
    with transaction.atomic():
        as_read.start_stage_runs(("summary",))
    assert (as_read.chief_complaint, as_read.age) == ("Syncope on exertion", 81)

    ClinicalCase.objects.filter(pk=case.pk).delete()
    with pytest.raises(CannotStart, match="deleted"), transaction.atomic():
        as_read.start_stage_runs(("differential",))
