"""What leaves the workspace for the chart: the assessment-and-plan note as plain text, the
case report as Markdown, and its print view. Each says what it is (decision support, not a
diagnosis), which model wrote it, when it left, and where each stage stands. What the
model wrote reaches a Markdown file inert: no link, image or raw HTML of its choosing."""

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.text import capfirst

from workflow import cant_miss
from workflow.markdown import inert, plain_text
from workflow.models import RESUMABLE, ClinicalCase, SignOff, StageRun, Status
from workflow.stages import STAGES, Stage

NOTE = "note"
DISCLAIMER = "Decision support — not a diagnosis."
_STANDING = {
    Status.COMPLETE: "complete",
    Status.STALE: "out of date",
    Status.RUNNING: "being written",
    Status.QUEUED: "queued",
}


@dataclass
class Entry:
    """A stage in the report, with its latest run."""

    stage: Stage
    run: StageRun | None

    @property
    def incomplete(self) -> bool:
        """Its text stopped before it was finished (an error, a Stop, a lost process), and
        no clinician completed it."""
        return self.run is not None and self.run.incomplete

    @property
    def standing(self) -> str:
        """Where it stands: its status and what a clinician decided of it."""
        if self.run is None:
            return "not run"
        if self.run.status in RESUMABLE and self.run.edited:
            status = "stopped early, completed by a clinician"
        elif self.run.status in RESUMABLE:
            status = "incomplete: it stopped before it finished"
        else:
            status = _STANDING[self.run.status]
        return f"{status}, {self.review}"

    @property
    def review(self) -> str:
        signoff = self.run.signoff
        if signoff is None:
            return "not reviewed by a clinician"
        when = f"{timezone.localtime(signoff.decided_at):%d %b %Y, %H:%M %Z}"
        said = f" ({' '.join(signoff.reason.split())})" if signoff.reason else ""
        decided = f"{self.run.decision} by {signoff.decider} on {when}{said}"
        if self.run.status == Status.STALE:
            return f"{decided}, before it went out of date"
        return decided

    @property
    def summary(self) -> str:
        return self.run.summary_in_use.strip() if self.run else ""

    @property
    def text(self) -> str:
        """The stage's text in full (the reasoning), as a clinician signed it if they did."""
        return self.run.reasoning_in_use.strip() if self.run else ""


@dataclass
class Report:
    case: ClinicalCase
    entries: list[Entry]
    lane: cant_miss.Lane
    made_at: datetime

    @classmethod
    def of(cls, case: ClinicalCase) -> "Report":
        latest = case.latest_runs()
        entries = [Entry(stage, latest.get(key)) for key, stage in STAGES.items()]
        return cls(case, entries, cant_miss.Lane.of(latest.get(cant_miss.STAGE)), timezone.now())

    @property
    def must_not_miss(self) -> str:
        """The can't-miss diagnoses, as the lane says them (empty before the differential)."""
        if self.lane.state == "absent":
            return ""
        if not self.lane.items:
            return "The differential diagnosis did not name its can't-miss diagnoses."
        named = "Must not miss: " + ", ".join(self.lane.items)
        if self.lane.decision == SignOff.Decision.REJECTED:
            return named + " (from a differential a clinician rejected)."
        if self.lane.incomplete:
            return named + " (from a differential that stopped before it finished)."
        return named + "."

    @property
    def note(self) -> Entry:
        return next(entry for entry in self.entries if entry.stage.key == NOTE)

    @property
    def models(self) -> str:
        """The models (or the offline demo engine) that wrote what it holds."""
        engines = sorted({e.run.engine for e in self.entries if e.run and e.run.engine})
        return ", ".join(engines) or "no model yet"

    @property
    def made(self) -> str:
        return f"{timezone.localtime(self.made_at):%d %b %Y, %H:%M %Z}"

    def provenance(self) -> list[str]:
        """What every export and print ends with."""
        stages = "; ".join(f"{entry.stage.title}: {entry.standing}" for entry in self.entries)
        return [
            DISCLAIMER,
            f"From MedhastraAI, written by {self.models}; exported {self.made}.",
            f"Stages: {stages}.",
        ]


def note_text(report: Report) -> str | None:
    """The note as plain text ready to paste into an EHR, or None while it has no text."""
    note = report.note
    if not note.text:
        return None
    warnings = []
    if note.incomplete:
        warnings.append("[Incomplete: this note stopped before it was finished.]")
    elif note.run.status in _STANDING and note.run.status != Status.COMPLETE:
        warnings.append(f"[This note is {_STANDING[note.run.status]}.]")
    if note.run.decision == SignOff.Decision.REJECTED:
        warnings.append("[A clinician rejected this note.]")
    body = "\n".join([*warnings, plain_text(note.text)]).strip()
    return "\n".join([body, "", "—", *report.provenance()]) + "\n"


def report_markdown(report: Report) -> str:
    """The case, each stage's summary and standing, and the note, as Markdown."""
    parts = [f"# {report.case}", f"_{DISCLAIMER}_", "## The case"]
    parts.append("\n".join(f"- **{label}:** {value}" for label, value in report.case.facts()))
    if report.must_not_miss:
        parts.append(f"**{inert(report.must_not_miss).strip()}**")
    for entry in report.entries:
        parts.append(f"## {entry.stage.title}")
        parts.append(f"_{inert(capfirst(entry.standing)).strip()}._")
        if entry.summary:
            parts.append(inert(entry.summary).strip())
    if report.note.text:
        parts += ["## The note in full", inert(report.note.text).strip()]
    parts += ["---", "\n".join(f"{inert(line).strip()}  " for line in report.provenance())]
    return "\n\n".join(parts) + "\n"
