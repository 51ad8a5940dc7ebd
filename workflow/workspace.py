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
    """Every run of each stage and the group running, read once (two queries) for the
    sections, the stepper and the stream to follow."""

    runs: dict[str, list[StageRun]]  # newest first
    workflow: WorkflowRun | None

    @classmethod
    def of(cls, case: ClinicalCase) -> "Now":
        return cls(case.runs_by_stage(), case.workflow_runs.unfinished().first())

    @property
    def latest(self) -> dict[str, StageRun]:
        return {key: runs[0] for key, runs in self.runs.items() if runs}

    def runs_of(self, workflow: WorkflowRun) -> list[StageRun]:
        """The group's runs, in the order it runs them."""
        runs = (run for runs in self.runs.values() for run in runs)
        return sorted((run for run in runs if run.workflow_run_id == workflow.pk), key=_pk)


def _pk(run: StageRun) -> int:
    return run.pk


def stepper(case: ClinicalCase, now: Now) -> dict:
    """The stepper: every stage's latest run, by group, and the group running now."""
    latest, workflow = now.latest, now.workflow
    progress = None
    if workflow:
        runs = now.runs_of(workflow)
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


def section(now: Now, stage_key: str) -> Section:
    return Section.of(STAGES[stage_key], now.runs[stage_key])


def page(case: ClinicalCase, selected: str | None) -> dict:
    now = Now.of(case)
    return {
        **stepper(case, now),
        "case": case,
        "sections": [section(now, key) for key in STAGES],
        "timeline": case.timeline(),
        "stream_url": next_stream_url(case, now),
        "replying": case.chat_messages.active().exists(),
        "selected": selected if selected in STAGES else None,
    }


def next_stream_url(case: ClinicalCase, now: Now) -> str | None:
    """What the page follows: whatever is running now, if anything."""
    stream = case.active_stream(now.latest, now.workflow)
    return events_url(stream) if stream else None
