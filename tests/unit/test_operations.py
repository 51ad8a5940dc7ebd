"""The Operations page's arithmetic: histograms and the hourly error rate."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from workflow.operations import HOURS, error_rate_by_hour, histogram

EDGES = (0.5, 1, 2, 4)
NOW = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)


@given(st.lists(st.floats(0, 100, allow_nan=False)))
def test_every_value_is_counted_once_in_the_bucket_it_falls_in(values):
    bars = histogram(values, EDGES)
    assert [bar.label for bar in bars] == [
        "< 0.5 s", "0.5 to 1 s", "1 to 2 s", "2 to 4 s", "≥ 4 s",
    ]  # fmt: skip
    assert sum(bar.value for bar in bars) == len(values)
    assert bars[2].value == sum(1 <= value < 2 for value in values)


def test_the_error_rate_is_per_hour_of_the_last_day_oldest_first():
    ended = [
        (NOW - timedelta(minutes=10), "error"),
        (NOW - timedelta(minutes=20), "complete"),
        (NOW - timedelta(minutes=25), "interrupted"),
        (NOW - timedelta(minutes=40), "complete"),  # 13:50: the hour before
        (NOW - timedelta(hours=30), "error"),  # too old
    ]
    bars = error_rate_by_hour(ended, NOW)
    assert len(bars) == HOURS
    assert (bars[-1].label, bars[-1].shown) == ("14:00", "67% of 3")
    assert (bars[-2].label, bars[-2].shown) == ("13:00", "0% of 1")
    assert (bars[0].label, bars[0].shown) == ("15:00", "none ended")
