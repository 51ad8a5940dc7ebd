"""Who viewed, ran, stopped, edited and exported each case, when and from where: kept by
Postgres as written, never case text or model output, after the case itself is gone."""

import pytest
from django.db import DatabaseError, transaction
from django.urls import reverse

from tests.conftest import wait_until
from workflow.models import AuditEvent, ClinicalCase, StageRun

pytestmark = pytest.mark.django_db(transaction=True)


def _trail(case) -> list[tuple[str, str, str]]:
    events = AuditEvent.objects.filter(case_id=case.pk).order_by("at", "pk")
    return [(e.user.username, e.action, e.detail) for e in events]


def test_each_action_on_a_case_is_recorded_once(alice_http, case, simulator):
    simulator.configure(tps=10, words=200)
    alice_http.get(f"/cases/{case.pk}/").raise_for_status()
    alice_http.get(f"/cases/{case.pk}/", headers={"X-Page-Refresh": "true"})  # a poll
    alice_http.get(f"/cases/{case.pk}/", headers={"HX-Request": "true"})  # a catch-up
    htmx = {"HX-Request": "true"}
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=htmx).raise_for_status()
    wait_until(lambda: StageRun.objects.filter(case=case, status="running").exists())
    with alice_http.stream("GET", f"/cases/{case.pk}/stages/summary/events") as stream:
        next(stream.iter_lines())  # a stream (re)connect is no view
    alice_http.post(f"/cases/{case.pk}/stages/summary/cancel", headers=htmx).raise_for_status()
    alice_http.post(f"/cases/{case.pk}/groups/assessment/run", headers=htmx).raise_for_status()
    alice_http.post(f"/cases/{case.pk}/groups/assessment/cancel", headers=htmx)
    edited = {"age": "58", "sex": "male", "vitals": case.vitals}
    alice_http.post(f"/cases/{case.pk}/edit/", data=edited | {"chief_complaint": "Chest pain, 3 h"})
    alice_http.get(f"/cases/{case.pk}/export/report.md").raise_for_status()
    alice_http.get(f"/cases/{case.pk}/print/").raise_for_status()

    assert _trail(case) == [
        ("alice", "viewed", ""),
        ("alice", "ran", "summary"),
        ("alice", "stopped", "summary"),
        ("alice", "ran", "assessment"),
        ("alice", "stopped", "assessment"),
        ("alice", "edited", "chief_complaint"),
        ("alice", "exported", "report.md"),
        ("alice", "exported", "print"),
    ]
    assert {e.address for e in AuditEvent.objects.all()} == {"127.0.0.1"}


def test_it_holds_ids_and_actions_never_what_the_case_or_the_model_says(alice_client, case):
    alice_client.get(f"/cases/{case.pk}/")
    edited = {"age": "58", "sex": "male", "chief_complaint": "Syncope at rest"}
    assert alice_client.post(f"/cases/{case.pk}/edit/", edited).status_code == 302
    StageRun.objects.create(case=case, stage_key="note", status="complete", reasoning="Note.")
    alice_client.get(f"/cases/{case.pk}/export/note.txt")
    rows = list(AuditEvent.objects.values_list())
    assert len(rows) == 3
    values = [str(value) for row in rows for value in row]
    assert not any("Syncope" in value or "Note." in value for value in values)


def test_postgres_refuses_to_change_or_delete_it_and_it_outlives_the_case(alice_client, case):
    alice_client.get(f"/cases/{case.pk}/")
    event = AuditEvent.objects.get(case_id=case.pk)
    for change in (
        lambda: AuditEvent.objects.filter(pk=event.pk).update(action="edited"),
        lambda: AuditEvent.objects.filter(pk=event.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            change()
    case_id = case.pk
    case.delete()
    assert not ClinicalCase.objects.filter(pk=case_id).exists()
    assert AuditEvent.objects.get(case_id=case_id).action == "viewed"


def test_staff_read_it_in_the_admin_by_user_case_and_action(admin_client, alice_client, case):
    alice_client.get(f"/cases/{case.pk}/")
    alice_client.get(f"/cases/{case.pk}/print/")
    listing = reverse("admin:workflow_auditevent_changelist")
    assert admin_client.get(listing, {"action__exact": "exported"}).text.count("print") >= 1
    by_case = admin_client.get(listing, {"q": str(case.pk)})
    assert by_case.status_code == 200 and "2 audit events" in by_case.text
    assert admin_client.get(listing, {"q": "not a number"}).status_code == 200
    gone = AuditEvent.objects.create(user_id=999_999, case_id=case.pk, action="viewed")
    gone_page = reverse("admin:workflow_auditevent_change", args=[gone.pk])
    assert admin_client.get(gone_page).status_code == 200  # a deleted user's event opens
    event = AuditEvent.objects.first()
    change = reverse("admin:workflow_auditevent_change", args=[event.pk])
    assert admin_client.post(change, {"action": "ran"}).status_code == 403
    assert admin_client.get(reverse("admin:workflow_auditevent_add")).status_code == 403
    delete = reverse("admin:workflow_auditevent_delete", args=[event.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
