from django.urls import path

from workflow import views

urlpatterns = [
    path("", views.case_list, name="case-list"),
    path("cases/new/", views.case_new, name="case-new"),
    path("cases/<int:case_id>/", views.workspace_page, name="workspace"),
    path("cases/<int:case_id>/edit/", views.case_edit, name="case-edit"),
    path("cases/<int:case_id>/stages/<str:stage_key>/run", views.run_stage, name="run-stage"),
    path(
        "cases/<int:case_id>/stages/<str:stage_key>/events", views.stage_events, name="stage-events"
    ),
    path(
        "cases/<int:case_id>/stages/<str:stage_key>/continue",
        views.continue_stage,
        name="continue-stage",
    ),
    path(
        "cases/<int:case_id>/stages/<str:stage_key>/cancel", views.cancel_stage, name="cancel-stage"
    ),
    path("cases/<int:case_id>/groups/<str:group_key>/run", views.run_group, name="run-group"),
    path(
        "cases/<int:case_id>/groups/<str:group_key>/cancel", views.cancel_group, name="cancel-group"
    ),
    path(
        "cases/<int:case_id>/groups/<str:group_key>/events", views.group_events, name="group-events"
    ),
    path("cases/<int:case_id>/chat", views.chat, name="chat"),
    path("cases/<int:case_id>/chat/<int:message_id>/events", views.chat_events, name="chat-events"),
    path("cases/<int:case_id>/chat/<int:message_id>/retry", views.retry_reply, name="retry-reply"),
    path(
        "cases/<int:case_id>/chat/<int:message_id>/cancel", views.cancel_reply, name="cancel-reply"
    ),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
]
