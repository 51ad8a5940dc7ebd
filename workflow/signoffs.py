"""A clinician's sign-off of a stage: its latest run accepted, edited or rejected. The
decision is a `SignOff` row, never changed; what it changes of the text, later stages, the
chat and the exports use, and the stages that built on the old text turn stale."""

from django.db import transaction
from django.db.models import F

from workflow.models import RESUMABLE, CannotStart, ClinicalCase, SignOff, StageRun, Status
from workflow.stages import STAGES

Decision = SignOff.Decision

# The decisions a clinician posts, and what each records.
DECISIONS = {"accept": Decision.ACCEPTED, "edit": Decision.EDITED, "reject": Decision.REJECTED}


class CannotSignOff(Exception):
    """The decision cannot be made now; the message says why and what to do."""


@transaction.atomic
def decide(
    case: ClinicalCase,
    stage_key: str,
    user,
    decision: str,
    summary: str = "",
    reasoning: str = "",
    reason: str = "",
    seen: int | None = None,
    phi_choice: str = "",
) -> SignOff:
    """Record `decision` (a `Decision`) on the stage's latest run (which must be the run
    `seen`, if given: the one the clinician read), holding the case as starts do: no run
    can start from the old text while the decision is made."""
    try:
        case.lock_for_a_start()
    except CannotStart as deleted:
        raise CannotSignOff(str(deleted)) from None
    run = case.stage_runs.select_related("signoff").of_stage(stage_key).first()
    if seen is not None and seen != run.pk:
        raise CannotSignOff(f"{run.stage.title} was run again since: decide on the new text.")
    if refusal := why_not(case, run, decision):
        raise CannotSignOff(refusal)
    if decision == Decision.EDITED and (summary, reasoning) == _model_text(run):
        raise CannotSignOff(_unchanged(run))
    if decision != Decision.EDITED:
        summary, reasoning = run.summary_in_use, run.reasoning_in_use
        phi_choice = run.signoff.phi_choice if run.signoff_id else ""
    changes_text = decision == Decision.REJECTED or (summary, reasoning) != (
        run.summary_in_use,
        run.reasoning_in_use,
    )
    signoff = SignOff.objects.create(
        stage_run=run,
        case_id=case.pk,
        decision=decision,
        summary=summary,
        reasoning=reasoning,
        reason=reason if decision == Decision.REJECTED else "",
        phi_choice=phi_choice,
        decided_by=user,
    )
    # A new seq: a page that reconnects to the stage's stream gets the decision too.
    StageRun.objects.filter(pk=run.pk).update(signoff=signoff, seq=F("seq") + 1)
    if changes_text:
        case.mark_stale_after(stage_key)
    return signoff


def why_not(case: ClinicalCase, run: StageRun, decision: str) -> str | None:
    """Why `decision` cannot be made on the run now, if it cannot."""
    title = run.stage.title
    if not run.finished:
        return f"{title} is still being written: decide on it once it is finished."
    if run.status == Status.STALE:
        return f"{title} is out of date: run it again, then decide on the new text."
    if not run.text_so_far:
        return f"{title} has no text to decide on: run it again."
    if decision == Decision.ACCEPTED and not run.acceptable:
        return f"{title} stopped before it was finished: edit it to complete it, or reject it."
    if decision != Decision.ACCEPTED and _builds_on_it_now(case, run):
        return (
            f"Stages that build on {title.lower()} are being written: wait for them, or stop "
            "them, before you change what they build on."
        )
    return None


def _model_text(run: StageRun) -> tuple[str, str]:
    """As the edit form compares it: what a browser sends back unchanged."""
    return run.summary.strip(), run.reasoning.strip()


def _unchanged(run: StageRun) -> str:
    what = run.stage.title.lower()
    if run.status in RESUMABLE:
        return f"Nothing was changed: complete the text of {what}, or reject it."
    return f"Nothing was changed: accept {what} as it is, or change its text."


def _builds_on_it_now(case: ClinicalCase, run: StageRun) -> bool:
    later = list(STAGES)[list(STAGES).index(run.stage_key) + 1 :]
    return case.stage_runs.active().filter(stage_key__in=later).exists()
