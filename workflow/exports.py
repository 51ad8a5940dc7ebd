"""What leaves the workspace for the chart: the assessment-and-plan note as plain text, the
case report as Markdown, and its print view. Each says what it is (decision support, not a
diagnosis), which model wrote it, when it left, and where each stage stands. What the
model wrote reaches a Markdown file inert: no link, image or raw HTML of its choosing."""

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from workflow import cant_miss
from workflow.markdown import inert, plain_text
from workflow.models import ClinicalCase, StageRun, Status
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
        """Its text stopped before it was finished (an error, a Stop, a lost process)."""
        return self.run is not None and self.run.status in (
            Status.ERROR,
            Status.CANCELLED,
            Status.INTERRUPTED,
        )

    @property
    def standing(self) -> str:
        """Where it stands: its status and whether a clinician has reviewed it."""
        if self.run is None:
            return "not run"
        status = _STANDING.get(self.run.status, "incomplete: it stopped before it finished")
        return f"{status}, not reviewed by a clinician"


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
        return "Must not miss: " + ", ".join(self.lane.items) + "."

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
    if note.run is None or not note.run.reasoning.strip():
        return None
    warnings = []
    if note.incomplete:
        warnings.append("[Incomplete: this note stopped before it was finished.]")
    elif note.run.status != Status.COMPLETE:
        warnings.append(f"[This note is {note.standing.split(',')[0]}.]")
    body = "\n".join([*warnings, plain_text(note.run.reasoning)]).strip()
    return "\n".join([body, "", "—", *report.provenance()]) + "\n"


def report_markdown(report: Report) -> str:
    """The case, each stage's summary and standing, and the note, as Markdown."""
    parts = [f"# {report.case}", f"_{DISCLAIMER}_", "## The case"]
    parts.append("\n".join(f"- **{label}:** {value}" for label, value in report.case.facts()))
    if report.must_not_miss:
        parts.append(f"**{inert(report.must_not_miss).strip()}**")
    for entry in report.entries:
        parts.append(f"## {entry.stage.title}")
        parts.append(f"_{entry.standing.capitalize()}._")
        if entry.run and entry.run.summary.strip():
            parts.append(inert(entry.run.summary).strip())
    if report.note.run and report.note.run.reasoning.strip():
        parts += ["## The note in full", inert(report.note.run.reasoning).strip()]
    parts += ["---", "\n".join(f"{line}  " for line in report.provenance()).rstrip()]
    return "\n\n".join(parts) + "\n"
