"""The admin: every list and change page opens for staff."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse

from workflow.models import ChatMessage, StageRun, WorkflowRun

pytestmark = pytest.mark.django_db


def test_every_admin_list_and_change_page_opens(admin_client, case):
    workflow = WorkflowRun.objects.create(case=case, group_key="assessment")
    StageRun.objects.create(
        case=case, workflow_run=workflow, stage_key="summary", status="complete",
        reasoning="Reasoning.", summary="Summary.", inputs={},
    )  # fmt: skip
    ChatMessage.objects.create(case=case, role="assistant", content="A reply.")
    Group.objects.create(name="Ward 3")

    for model in admin.site._registry:
        names = model._meta.app_label, model._meta.model_name
        listed = admin_client.get(reverse("admin:{}_{}_changelist".format(*names)))
        assert listed.status_code == 200, names
        first = model.objects.first()
        assert first is not None, f"no {names} to open"
        opened = admin_client.get(reverse("admin:{}_{}_change".format(*names), args=[first.pk]))
        assert opened.status_code == 200, names
