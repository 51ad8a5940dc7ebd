"""How much one clinician may ask of the model: generations running or queued at once, and
a real provider's tokens in a day (the offline demo engine costs nothing)."""

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Spending:
    """A clinician's generations running or queued now, and the provider tokens their
    generations used today (None: no provider is configured, nothing is spent)."""

    active: int
    tokens_today: int | None


def day_start(now: datetime) -> datetime:
    """When the day's token budget began: midnight UTC (`now` is in UTC)."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def refusal(
    spending: Spending, starting: int, now: datetime, *, max_active: int, daily_budget: int
) -> str | None:
    """Why `starting` more generations may not start now, saying when they could; else None."""
    if starting > max_active:
        return (
            f"Limit reached: this would start {starting} generations at once, and "
            f"{max_active} is the most one clinician may have running or queued. Run fewer "
            f"stages at a time."
        )
    beyond = spending.active + starting - max_active
    if beyond > 0:
        them = "one of them has" if beyond == 1 else f"{beyond} of them have"
        return (
            f"Limit reached: you have {spending.active} generations running or queued, and "
            f"{max_active} at once is the most; this would start {starting} more. It can "
            f"start once {them} finished or been stopped."
        )
    if spending.tokens_today is not None and spending.tokens_today >= daily_budget:
        renews = day_start(now) + timedelta(days=1)
        hours, seconds = divmod(int((renews - now).total_seconds()), 3600)
        return (
            f"Daily limit reached: your generations used {spending.tokens_today:,} of the "
            f"{daily_budget:,} tokens a clinician may use with the AI provider in a day. It "
            f"renews at {renews:%H:%M} {renews:%Z}, in {hours} h {seconds // 60} min."
        )
    return None
