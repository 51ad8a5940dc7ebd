"""The can't-miss diagnoses: the differential names them in a section of its own
(`<cant_miss>`, one per line), and the page shows them first, in a lane of their own,
as each line is finished. Only that section counts: no keyword spotting."""

import re
from dataclasses import dataclass, field

from workflow.models import RESUMABLE, StageRun, Status

STAGE = "differential"
_MARKER = re.compile(r"^(?:[-*•+]|\d{1,2}[.)])\s+")


def items(text: str, *, finished: bool) -> list[str]:
    """The diagnoses the section names: one a line, list markers dropped, and while it is
    being written only the lines that are finished."""
    lines = re.split(r"\r\n?|\n", text)
    if not finished:
        lines.pop()
    return [named for line in lines if (named := _MARKER.sub("", line.strip()).strip())]


@dataclass
class Lane:
    """What the lane shows: nothing before the differential has run (`absent`); what it
    named (`present`); or, once it finished without naming any, that it did not
    (`missing`)."""

    state: str = "absent"
    items: list[str] = field(default_factory=list)
    status: str = ""  # of the differential run it comes from
    decision: str = "none"  # a clinician's on that run

    @property
    def incomplete(self) -> bool:
        """From a differential that stopped before it finished."""
        return self.status in RESUMABLE

    @classmethod
    def of(cls, run: StageRun | None) -> "Lane":
        if run is None or run.status == Status.QUEUED:
            return cls()
        # Its last line is whole once the summary began, or the model said all it had to; a
        # run cut off inside the part may have stopped in the middle of a diagnosis.
        closed = bool(run.summary) or run.status in (Status.COMPLETE, Status.STALE)
        lane = cls.written(run.cant_miss, run.status, finished=closed)
        if run.finished and not lane.items:
            lane = cls("missing", [], run.status)
        lane.decision = run.decision
        return lane

    @classmethod
    def written(cls, text: str, status: str, *, finished: bool) -> "Lane":
        named = items(text, finished=finished)
        if named:
            return cls("present", named, status)
        return cls("missing", [], status) if finished else cls()
