"""What the workspace page shows, built the same way for a page load and for every event."""

from dataclasses import dataclass, field

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse

from workflow.models import ACTIVE, ChatMessage, ClinicalCase, StageRun, WorkflowRun
from workflow.stages import GROUPS, RUN_ALL, STAGES, Stage


@dataclass
class Section:
    """A stage in the ReasoningPanel: its latest run and the earlier ones, kept readable."""

    stage: Stage
    run: StageRun | None = None
    earlier: list[StageRun] = field(default_factory=list)


def events_url(item: StageRun | WorkflowRun | ChatMessage) -> str:
    match item:
        case StageRun():
            return reverse("stage-events", args=[item.case_id, item.stage_key])
        case WorkflowRun():
            return reverse("group-events", args=[item.case_id, item.group_key])
        case ChatMessage():
            return reverse("chat-events", args=[item.case_id, item.pk])


def stepper(case: ClinicalCase) -> dict:
    """The stepper: every stage's latest run, by group, and the group running now."""
    latest = case.latest_runs()
    workflow = case.workflow_runs.filter(finished_at=None).first()
    progress = None
    if workflow:
        runs = list(workflow.stage_runs.order_by("pk"))
        done = sum(run.finished for run in runs)
        current = min(done + 1, len(runs))
        progress = f"{workflow.group.title}: stage {current} of {len(runs)}"
    return {
        "case_id": case.pk,
        "groups": [
            (group, [(STAGES[key], latest.get(key)) for key in group.stage_keys])
            for group in GROUPS.values()
        ],
        "run_all": RUN_ALL,
        "busy": any(run.status in ACTIVE for run in latest.values()),
        "workflow": workflow,
        "progress": progress,
    }


def section(case: ClinicalCase, stage_key: str) -> Section:
    runs = list(case.stage_runs.filter(stage_key=stage_key).order_by("-queued_at", "-id"))
    return Section(STAGES[stage_key], runs[0] if runs else None, runs[1:])


def page(case: ClinicalCase, selected: str | None) -> dict:
    runs = case.runs_by_stage()
    stream = case.active_stream()
    return {
        **stepper(case),
        "case": case,
        "sections": [
            Section(stage, runs[key][0] if runs[key] else None, runs[key][1:])
            for key, stage in STAGES.items()
        ],
        "timeline": case.timeline(),
        "stream_url": events_url(stream) if stream else None,
        "replying": case.chat_messages.filter(status__in=ACTIVE).exists(),
        "selected": selected if selected in STAGES else None,
    }


def next_stream_url(case: ClinicalCase) -> str | None:
    """After a stream ends, the page follows whatever else is still running."""
    stream = case.active_stream()
    return events_url(stream) if stream else None


PAGE = "workflow/workspace.html"


def fragment(request: HttpRequest, partial: str, context: dict) -> str:
    """One partial of the workspace page, as the page itself renders it."""
    return render_to_string(f"{PAGE}#{partial}", context, request)


def fragments(request: HttpRequest, partials: list[str], context: dict) -> str:
    """Partials that replace their counterparts on the page (`hx-swap-oob`)."""
    return "".join(fragment(request, p, {**context, "oob": True}) for p in partials)
