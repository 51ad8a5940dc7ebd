"""What a clinician may start: within MAX_ACTIVE_GENERATIONS and the daily token budget."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from workflow.quotas import Spending, refusal

NOW = datetime(2026, 11, 28, 21, 15, tzinfo=UTC)
LIMITS = {"max_active": 12, "daily_budget": 400_000}


@given(active=st.integers(0, 30), starting=st.integers(1, 6))
def test_a_start_is_refused_exactly_when_it_would_pass_the_generations_limit(active, starting):
    said = refusal(Spending(active, None), starting, NOW, **LIMITS)
    assert (said is not None) == (active + starting > 12)
    if said:
        assert "12 at once" in said
        freed = active + starting - 12
        assert ("one of them has" if freed == 1 else f"{freed} of them have") in said


def test_run_all_on_a_third_case_says_which_limit_and_when_it_frees_up():
    said = refusal(Spending(12, 0), 6, NOW, **LIMITS)
    assert said == (
        "Limit reached: you have 12 generations running or queued, and 12 at once is the "
        "most; this would start 6 more. It can start once 6 of them have finished or been "
        "stopped."
    )


@given(used=st.integers(0, 10**6))
def test_the_budget_refuses_once_it_is_used_up(used):
    said = refusal(Spending(0, used), 1, NOW, **LIMITS)
    assert (said is not None) == (used >= 400_000)


def test_the_budget_says_when_it_renews():
    said = refusal(Spending(0, 400_123), 1, NOW, **LIMITS)
    assert "used 400,123 of the 400,000 tokens" in said
    assert "renews at 00:00 UTC, in 2 h 45 min" in said


def test_the_offline_demo_engine_has_no_budget():
    assert refusal(Spending(0, None), 1, NOW, **LIMITS) is None


def test_more_stages_at_once_than_the_limit_allows_says_to_run_fewer():
    said = refusal(Spending(0, None), 6, NOW, max_active=4, daily_budget=1)
    assert said == (
        "Limit reached: this would start 6 generations at once, and 4 is the most one "
        "clinician may have running or queued. Run fewer stages at a time."
    )
