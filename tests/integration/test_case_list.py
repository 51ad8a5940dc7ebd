"""The case list: each case with its progress, however many cases there are."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from workflow.models import ClinicalCase, StageRun

pytestmark = pytest.mark.django_db


def _case_with_runs(owner, complaint: str) -> ClinicalCase:
    """Summary complete; differential complete once, then run again and still running."""
    case = ClinicalCase.objects.create(owner=owner, chief_complaint=complaint)
    StageRun.objects.create(case=case, stage_key="summary", status="complete")
    StageRun.objects.create(case=case, stage_key="differential", status="complete")
    StageRun.objects.create(case=case, stage_key="differential", status="running")
    return case


def _queries_to_list(client) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/")
    assert response.status_code == 200
    return len(queries), response.text


def test_it_shows_each_case_with_the_stages_whose_latest_run_is_complete(alice, alice_client):
    _case_with_runs(alice, "Chest pain")
    _, page = _queries_to_list(alice_client)
    assert "Chest pain" in page
    assert "1 / 6 stages complete" in page


def test_its_query_count_does_not_grow_with_its_rows(alice, alice_client):
    _case_with_runs(alice, "Chest pain")
    for_one, _ = _queries_to_list(alice_client)
    for n in range(9):
        _case_with_runs(alice, f"Headache {n}")

    for_ten, page = _queries_to_list(alice_client)

    assert page.count("1 / 6 stages complete") == 10
    assert for_ten == for_one
