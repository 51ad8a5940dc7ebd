from django.urls import path

from workflow import views

urlpatterns = [
    path("", views.case_list, name="case-list"),
    path("cases/new/", views.case_new, name="case-new"),
    path("cases/<int:case_id>/", views.workspace, name="workspace"),
    path("cases/<int:case_id>/stages/<str:stage_key>/run", views.run_stage, name="run-stage"),
    path(
        "cases/<int:case_id>/stages/<str:stage_key>/events", views.stage_events, name="stage-events"
    ),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
]
