"""What the workspace page shows, built the same way for a page load and for every event."""

from dataclasses import dataclass, field

from django.urls import reverse

from workflow.models import ChatMessage, ClinicalCase, StageRun, WorkflowRun
from workflow.stages import GROUPS, RUN_ALL, STAGES, Stage


@dataclass
class Section:
    """A stage in the ReasoningPanel: its latest run and the earlier ones, kept readable."""

    stage: Stage
    run: StageRun | None = None
    earlier: list[StageRun] = field(default_factory=list)

    @classmethod
    def of(cls, stage: Stage, runs: list[StageRun]) -> "Section":
        """From every run of the stage, newest first."""
        return cls(stage, runs[0] if runs else None, runs[1:])


def events_url(item: StageRun | WorkflowRun | ChatMessage) -> str:
    match item:
        case StageRun():
            return reverse("stage-events", args=[item.case_id, item.stage_key])
        case WorkflowRun():
            return reverse("group-events", args=[item.case_id, item.group_key])
        case ChatMessage():
            return reverse("chat-events", args=[item.case_id, item.pk])


@dataclass
class Now:
    """The latest run of each stage and the group running, read once for the stepper and
    for the stream to follow."""

    latest: dict[str, StageRun]
    workflow: WorkflowRun | None

    @classmethod
    def of(cls, case: ClinicalCase) -> "Now":
        return cls(case.latest_runs(), case.workflow_runs.unfinished().first())


def stepper(case: ClinicalCase, now: Now) -> dict:
    """The stepper: every stage's latest run, by group, and the group running now."""
    latest, workflow = now.latest, now.workflow
    progress = None
    if workflow:
        runs = list(workflow.stage_runs.order_by("pk"))
        # The first stage not yet over; one stopped while it waited is over too.
        current = next((n for n, run in enumerate(runs, 1) if not run.finished), len(runs))
        progress = f"{workflow.group.title}: stage {current} of {len(runs)}"
    return {
        "case_id": case.pk,
        "groups": [
            (group, [(STAGES[key], latest.get(key)) for key in group.stage_keys])
            for group in GROUPS.values()
        ],
        "run_all": RUN_ALL,
        "busy": any(not run.finished for run in latest.values()),
        "workflow": workflow,
        "progress": progress,
    }


def section(case: ClinicalCase, stage_key: str) -> Section:
    return Section.of(STAGES[stage_key], list(case.stage_runs.of_stage(stage_key)))


def page(case: ClinicalCase, selected: str | None) -> dict:
    runs = case.runs_by_stage()
    now = Now.of(case)
    return {
        **stepper(case, now),
        "case": case,
        "sections": [Section.of(stage, runs[key]) for key, stage in STAGES.items()],
        "timeline": case.timeline(),
        "stream_url": next_stream_url(case, now),
        "replying": case.chat_messages.active().exists(),
        "selected": selected if selected in STAGES else None,
    }


def next_stream_url(case: ClinicalCase, now: Now) -> str | None:
    """What the page follows: whatever is running now, if anything."""
    stream = case.active_stream(now.latest, now.workflow)
    return events_url(stream) if stream else None
