"""Every case URL answers 404 to a clinician who may not see the case."""

import pytest
from django.test import Client

from workflow.models import StageRun

pytestmark = pytest.mark.django_db


def _case_urls(case):
    return [
        ("get", f"/cases/{case.pk}/"),
        ("post", f"/cases/{case.pk}/stages/summary/run"),
        ("get", f"/cases/{case.pk}/stages/summary/events"),
    ]


@pytest.fixture
def bob_client(bob) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def test_it_hides_cases_of_other_clinicians(bob_client, case):
    StageRun.objects.create(case=case, stage_key="summary", status="complete")
    for method, url in _case_urls(case):
        assert getattr(bob_client, method)(url).status_code == 404, url
    assert StageRun.objects.count() == 1


def test_it_lists_only_own_cases(bob_client, alice_client, case):
    assert case.chief_complaint in alice_client.get("/").text
    assert case.chief_complaint not in bob_client.get("/").text


def test_anonymous_users_are_sent_to_log_in_and_never_get_a_stream(client, case):
    StageRun.objects.create(case=case, stage_key="summary", status="running")
    for method, url in _case_urls(case):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/")
        assert not response.get("Content-Type", "").startswith("text/event-stream")


def test_unknown_stages_and_cases_are_404(alice_client, case):
    assert alice_client.get(f"/cases/{case.pk}/stages/nonsense/events").status_code == 404
    assert alice_client.post(f"/cases/{case.pk}/stages/nonsense/run").status_code == 404
    assert alice_client.get("/cases/999999/").status_code == 404


def test_a_stage_never_run_has_no_stream(alice_client, case):
    assert alice_client.get(f"/cases/{case.pk}/stages/summary/events").status_code == 404


def test_running_a_stage_needs_the_csrf_token(alice, case):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(f"/cases/{case.pk}/stages/summary/run").status_code == 403
    assert not StageRun.objects.exists()


def test_the_events_of_a_case_reject_post(alice_client, case):
    StageRun.objects.create(case=case, stage_key="summary", status="complete")
    assert alice_client.post(f"/cases/{case.pk}/stages/summary/events").status_code == 405


def test_patient_pages_and_fragments_are_never_stored(alice_client, case):
    for response in (
        alice_client.get("/"),
        alice_client.get(f"/cases/{case.pk}/"),
        alice_client.get(f"/cases/{case.pk}/edit/"),
        alice_client.post(f"/cases/{case.pk}/chat", {"message": " "}, headers={"HX-Request": "1"}),
    ):
        assert "no-store" in response["Cache-Control"], response.request["PATH_INFO"]
