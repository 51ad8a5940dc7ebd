"""The admin: every list and change page opens for staff, and what the model generated
is read-only there."""

import pytest
from axes.models import AccessFailureLog
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from waffle.models import Flag, Sample, Switch

from workflow.models import AuditEvent, ChatMessage, SignOff, StageRun, WorkflowRun

pytestmark = pytest.mark.django_db


def test_every_admin_list_and_change_page_opens(admin_client, case):
    workflow = WorkflowRun.objects.create(case=case, group_key="assessment")
    run = StageRun.objects.create(
        case=case, workflow_run=workflow, stage_key="summary", status="complete",
        reasoning="Reasoning.", summary="Summary.", inputs={},
    )  # fmt: skip
    SignOff.objects.create(stage_run=run, case_id=case.pk, decision="accepted", summary="S.")
    ChatMessage.objects.create(case=case, role="assistant", content="A reply.")
    Group.objects.create(name="Ward 3")
    Client().post("/accounts/login/", {"username": "alice", "password": "wrong"})  # axes rows
    AccessFailureLog.objects.create(username="alice", ip_address="10.0.0.1", user_agent="x")
    Flag.objects.create(name="streaming", everyone=None)
    Switch.objects.create(name="a-switch")
    Sample.objects.create(name="a-sample", percent=10)
    AuditEvent.objects.create(user=case.owner, case_id=case.pk, action="viewed")

    for model in admin.site._registry:
        names = model._meta.app_label, model._meta.model_name
        listed = admin_client.get(reverse("admin:{}_{}_changelist".format(*names)))
        assert listed.status_code == 200, names
        first = model.objects.first()
        assert first is not None, f"no {names} to open"
        opened = admin_client.get(reverse("admin:{}_{}_change".format(*names), args=[first.pk]))
        assert opened.status_code == 200, names


RECORDS = {
    StageRun: {"stage_key": "summary", "status": "complete", "summary": "Kept."},
    ChatMessage: {"role": "assistant", "status": "complete", "content": "Kept."},
    WorkflowRun: {"group_key": "assessment"},
}


@pytest.mark.parametrize("model", list(RECORDS))
def test_generated_text_statuses_and_timings_cannot_be_edited_or_invented(
    admin_client, case, model
):
    record = model.objects.create(case=case, **RECORDS[model])
    names = model._meta.app_label, model._meta.model_name
    change = reverse("admin:{}_{}_change".format(*names), args=[record.pk])

    page = admin_client.get(change)
    assert page.status_code == 200
    assert "<textarea" not in page.text and 'name="status"' not in page.text
    assert admin_client.post(change, {"status": "error", "summary": "Invented."}).status_code == 403
    assert admin_client.get(reverse("admin:{}_{}_add".format(*names))).status_code == 403
    fresh = model.objects.get(pk=record.pk)
    assert [getattr(fresh, field) for field in RECORDS[model]] == list(RECORDS[model].values())


def test_a_case_shows_its_runs_without_a_way_to_add_or_change_them(admin_client, case, bob):
    StageRun.objects.create(case=case, stage_key="summary", status="complete", summary="S.")
    change = reverse("admin:workflow_clinicalcase_change", args=[case.pk])
    page = admin_client.get(change)
    assert page.status_code == 200
    assert "stage_runs-0-status" not in page.text  # shown as text, not a field
    assert 'name="stage_runs-MAX_NUM_FORMS" value="0"' in page.text  # none can be added
    assert 'name="owner"' not in page.text  # the case stays its clinician's


def test_an_edit_in_the_admin_turns_the_stages_stale(admin_client, case):
    run = StageRun.objects.create(case=case, stage_key="summary", status="complete")
    change = reverse("admin:workflow_clinicalcase_change", args=[case.pk])
    form = {"age": 58, "sex": "male", "chief_complaint": "Chest pain since noon",
            "stage_runs-TOTAL_FORMS": 1, "stage_runs-INITIAL_FORMS": 1,
            "stage_runs-MIN_NUM_FORMS": 0, "stage_runs-MAX_NUM_FORMS": 0,
            "stage_runs-0-id": run.pk, "stage_runs-0-case": case.pk}  # fmt: skip
    assert admin_client.post(change, form).status_code == 302
    run.refresh_from_db()
    assert run.status == "stale"


def test_a_superuser_can_delete_a_case_with_what_was_generated_for_it(admin_client, case):
    StageRun.objects.create(case=case, stage_key="summary", status="complete")
    ChatMessage.objects.create(case=case, role="assistant", content="A reply.")
    delete = reverse("admin:workflow_clinicalcase_delete", args=[case.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not StageRun.objects.exists() and not ChatMessage.objects.exists()


def test_sign_offs_are_read_only_and_outlive_a_deleted_case(admin_client, case):
    run = StageRun.objects.create(case=case, stage_key="summary", status="complete")
    signoff = SignOff.objects.create(stage_run=run, case_id=case.pk, decision="accepted")
    StageRun.objects.filter(pk=run.pk).update(signoff=signoff)
    change = reverse("admin:workflow_signoff_change", args=[signoff.pk])
    assert admin_client.post(change, {"decision": "rejected"}).status_code == 403
    delete = reverse("admin:workflow_signoff_delete", args=[signoff.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403

    delete_case = reverse("admin:workflow_clinicalcase_delete", args=[case.pk])
    assert admin_client.post(delete_case, {"post": "yes"}).status_code == 302
    assert not StageRun.objects.exists()
    assert SignOff.objects.get().decision == "accepted"
