"""What the workspace page shows, built the same way for a page load and for every event."""

from dataclasses import dataclass, field
from itertools import chain

from django.urls import reverse

from workflow import cant_miss
from workflow.models import ChatMessage, ClinicalCase, SignOff, StageRun, Status, WorkflowRun
from workflow.stages import GROUPS, RUN_ALL, STAGES, Stage, to_run


@dataclass
class Section:
    """A stage in the ReasoningPanel: its latest run and the earlier ones, kept readable."""

    stage: Stage
    run: StageRun | None = None
    earlier: list[StageRun] = field(default_factory=list)
    plan: list[Stage] = field(default_factory=list)  # what its Run again runs
    busy: bool = False  # something of the case runs: no Run now


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
    """Every run of each stage and the group running, read once (one query) for the
    sections, the stepper, the chat and the stream to follow.

    Each run also learns what the page says of it beside its status: `superseded` (a
    later run of its stage exists: it is an earlier run, its Retry and Continue are moot)
    and, if stale, `stale_because`."""

    runs: dict[str, list[StageRun]]  # newest first
    workflow: WorkflowRun | None

    @classmethod
    def of(cls, case: ClinicalCase) -> "Now":
        runs = case.runs_by_stage()
        # A group is created with its runs: one still running is among theirs.
        groups = {run.workflow_run for each in runs.values() for run in each if run.workflow_run}
        running = (group for group in groups if group.finished_at is None)
        return cls(runs, max(running, key=_newest, default=None))

    def __post_init__(self) -> None:
        latest = self.latest
        for runs in self.runs.values():
            for n, run in enumerate(runs):
                run.superseded = n > 0
                run.stale_because = _why_stale(run, latest) if run.status == Status.STALE else ""

    @property
    def latest(self) -> dict[str, StageRun]:
        return {key: runs[0] for key, runs in self.runs.items() if runs}

    def run(self, pk: int) -> StageRun:
        return next(run for runs in self.runs.values() for run in runs if run.pk == pk)

    @property
    def complete(self) -> set[str]:
        """The stages done: later ones may build on their latest run."""
        return {key for key, run in self.latest.items() if run.usable}

    @property
    def busy(self) -> bool:
        return any(not run.finished for run in self.latest.values())

    def plan(self, stage_key: str) -> list[Stage]:
        """What the stage's Run runs: it, after the stages it needs that are not complete."""
        return [STAGES[key] for key in to_run([stage_key], self.complete, again=True)]

    def stale(self) -> list[StageRun]:
        """The stages whose latest run is stale."""
        return [run for run in self.latest.values() if run.status == Status.STALE]

    def runs_of(self, workflow: WorkflowRun) -> list[StageRun]:
        """The group's runs, in the order it runs them."""
        runs = (run for runs in self.runs.values() for run in runs)
        return sorted((run for run in runs if run.workflow_run_id == workflow.pk), key=_pk)


def _pk(run: StageRun) -> int:
    return run.pk


def _newest(workflow: WorkflowRun) -> tuple:
    return workflow.created_at, workflow.pk


def _why_stale(run: StageRun, latest: dict[str, StageRun]) -> str:
    """What changed since a stale run was written: stages it built on were run again, or
    a clinician edited or rejected them, else the case was edited."""
    built_on = [(latest[key], pk) for key, pk in run.inputs.items()]
    rerun = [source.stage.title for source, pk in built_on if source.pk != pk]
    if rerun:
        return f"{_and(rerun)} {_was(rerun)} run again after this was written."
    decided = [source for source, _ in built_on if _changed_by_signoff(source, since=run)]
    if decided:
        what = "rejected" if decided[0].decision == SignOff.Decision.REJECTED else "edited"
        titles = [source.stage.title for source in decided]
        return f"{_and(titles)} {_was(titles)} {what} by a clinician after this was written."
    return "The case was edited after this was written."


def _changed_by_signoff(source: StageRun, since: StageRun) -> bool:
    signoff = source.signoff
    changed = source.edited or source.decision == SignOff.Decision.REJECTED
    return changed and since.finished_at is not None and signoff.decided_at > since.finished_at


def _and(titles: list[str]) -> str:
    return " and ".join(titles)


def _was(titles: list[str]) -> str:
    return "was" if len(titles) == 1 else "were"


def stepper(case: ClinicalCase, now: Now) -> dict:
    """The stepper: every stage's latest run, by group, and the group running now."""
    latest, workflow = now.latest, now.workflow
    progress = None
    if workflow:
        runs = now.runs_of(workflow)
        # The first stage not yet over; one stopped while it waited is over too.
        current = next((n for n, run in enumerate(runs, 1) if not run.finished), len(runs))
        progress = f"{workflow.group.title}: stage {current} of {len(runs)}"
    steps = {key: (STAGES[key], latest.get(key), now.plan(key)) for key in STAGES}
    return {
        "case_id": case.pk,
        "groups": [(g, [steps[key] for key in g.stage_keys]) for g in GROUPS.values()],
        "run_all": RUN_ALL,
        "stage_count": len(STAGES),
        "complete_count": len(now.complete),
        "running_stage": next(
            (r.stage for r in latest.values() if r.status == Status.RUNNING), None
        ),
        "busy": now.busy,
        "workflow": workflow,
        "progress": progress,
    }


def section(now: Now, stage_key: str) -> Section:
    runs = now.runs[stage_key]
    first = runs[0] if runs else None
    return Section(STAGES[stage_key], first, runs[1:], now.plan(stage_key), now.busy)


def lane(now: Now) -> cant_miss.Lane:
    """The can't-miss lane, from the latest run of the stage that names them."""
    return cant_miss.Lane.of(now.latest.get(cant_miss.STAGE))


def page(case: ClinicalCase, selected: str | None) -> dict:
    now = Now.of(case)
    return {
        **stepper(case, now),
        "case": case,
        "lane": lane(now),
        "sections": [section(now, key) for key in STAGES],
        "timeline": timeline(case, now),
        "stream_url": next_stream_url(case, now),
        "replying": case.chat_messages.active().exists(),
        "selected": selected if selected in STAGES else None,
    }


def timeline(case: ClinicalCase, now: Now) -> list[StageRun | ChatMessage]:
    """The ChatContainer: stage summaries (but of runs stopped before they started) and
    chat, in order; a reply but the latest one is superseded, as a stage's earlier run."""
    runs = (run for runs in now.runs.values() for run in runs if run.in_chat)
    messages = list(case.chat_messages.all())
    replies = [message for message in messages if message.role == ChatMessage.Role.ASSISTANT]
    for reply in replies:
        reply.superseded = reply is not replies[-1]
    return sorted(chain(runs, messages), key=lambda item: (item.queued_at, item.pk))


def next_stream_url(case: ClinicalCase, now: Now) -> str | None:
    """What the page follows: whatever is running now, if anything."""
    stream = case.active_stream(now.latest, now.workflow)
    return events_url(stream) if stream else None
