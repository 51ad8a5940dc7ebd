from django.urls import path, register_converter
from django.urls.converters import StringConverter

from workflow import views


class IdConverter:
    """A row id: digits that fit Postgres's bigint (longer ones match nothing: 404)."""

    regex = "[0-9]{1,18}"
    to_python = int
    to_url = str


class KeyConverter(StringConverter):
    """A stage or group key: lower-case letters and underscores, as in the catalogue."""

    regex = "[a-z_]{1,40}"


register_converter(IdConverter, "id")
register_converter(KeyConverter, "key")

urlpatterns = [
    path("", views.case_list, name="case-list"),
    path("cases/new/", views.case_new, name="case-new"),
    path("cases/<id:case_id>/", views.workspace_page, name="workspace"),
    path("cases/<id:case_id>/edit/", views.case_edit, name="case-edit"),
    path("cases/<id:case_id>/export/note.txt", views.export_note, name="export-note"),
    path("cases/<id:case_id>/export/report.md", views.export_report, name="export-report"),
    path("cases/<id:case_id>/print/", views.print_report, name="print-report"),
    path("cases/<id:case_id>/stages/<key:stage_key>/run", views.run_stage, name="run-stage"),
    path(
        "cases/<id:case_id>/stages/<key:stage_key>/events", views.stage_events, name="stage-events"
    ),
    path(
        "cases/<id:case_id>/stages/<key:stage_key>/continue",
        views.continue_stage,
        name="continue-stage",
    ),
    path(
        "cases/<id:case_id>/stages/<key:stage_key>/cancel", views.cancel_stage, name="cancel-stage"
    ),
    path("cases/<id:case_id>/stages/<key:stage_key>/signoff", views.signoff, name="stage-signoff"),
    path("cases/<id:case_id>/groups/<key:group_key>/run", views.run_group, name="run-group"),
    path(
        "cases/<id:case_id>/groups/<key:group_key>/cancel", views.cancel_group, name="cancel-group"
    ),
    path(
        "cases/<id:case_id>/groups/<key:group_key>/events", views.group_events, name="group-events"
    ),
    path("cases/<id:case_id>/chat", views.chat, name="chat"),
    path("cases/<id:case_id>/chat/<id:message_id>/events", views.chat_events, name="chat-events"),
    path("cases/<id:case_id>/chat/<id:message_id>/retry", views.retry_reply, name="retry-reply"),
    path("cases/<id:case_id>/chat/<id:message_id>/cancel", views.cancel_reply, name="cancel-reply"),
    path("ops/", views.operations, name="operations"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.prometheus_metrics, name="metrics"),
]
