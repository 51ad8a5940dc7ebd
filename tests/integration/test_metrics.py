"""/metrics after real runs: what an operator's Prometheus reads, and that it is right
when several server processes run on a host."""

import httpx
import pytest

from tests.conftest import log_in, scrape, start_server, stop_process, wait_until
from tests.streams import follow
from workflow.models import ClinicalCase

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}


def _grew(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def test_runs_replies_failures_stops_resumes_and_polling_are_counted(
    server, alice_http, case, simulator
):
    before = scrape(server)
    simulator.configure(tps=60, words=60)
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    view, _ = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")  # live
    follow(alice_http, f"/cases/{case.pk}/stages/summary/events", last_event_id=view.events[0].id)

    reply = alice_http.post(f"/cases/{case.pk}/chat", data={"message": "Why?"}, headers=HTMX)
    assert reply.is_success
    replied = case.chat_messages.filter(role="assistant", status="complete")
    wait_until(replied.exists, 20)

    simulator.configure(tps=5, words=200)
    alice_http.post(f"/cases/{case.pk}/stages/differential/run", headers=HTMX)
    writing = case.stage_runs.filter(stage_key="differential").exclude(reasoning="")
    wait_until(writing.exists)
    alice_http.post(f"/cases/{case.pk}/stages/differential/cancel", headers=HTMX)
    wait_until(lambda: case.stage_runs.filter(status="cancelled").exists())

    simulator.configure(faults=["500"] * 4)
    alice_http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
    wait_until(lambda: case.stage_runs.filter(status="error").exists(), 20)

    alice_http.get(f"/cases/{case.pk}/", headers={"X-Fallback": "polling"})
    after = scrape(server)

    generations = "medhastra_generations_total"
    assert _grew(before, after, generations, kind="stage", stage="summary", status="complete") == 1
    assert _grew(before, after, generations, kind="reply", stage="", status="complete") == 1
    assert _grew(before, after, generations, kind="stage", stage="differential", status="cancelled")
    assert _grew(before, after, generations, kind="stage", stage="summary", status="error") == 1
    assert _grew(before, after, "medhastra_provider_errors_total", code="provider_error") == 1
    assert _grew(before, after, "medhastra_provider_retries_total", code="provider_error") == 3
    assert _grew(before, after, "medhastra_stream_resumes_total") == 1
    assert _grew(before, after, "medhastra_fallbacks_total", kind="polling") == 1
    assert _grew(before, after, "medhastra_time_to_first_token_seconds_count") == 3
    assert _grew(before, after, "medhastra_token_gap_seconds_count") > 100
    assert _grew(before, after, "medhastra_delivery_lag_seconds_count") >= 5
    assert _grew(before, after, "medhastra_stage_duration_seconds_count") == 3
    slowest = after[("medhastra_stage_duration_seconds_bucket", (("le", "60.0"),))]
    assert slowest == after[("medhastra_stage_duration_seconds_count", ())]
    assert after[("medhastra_running_generations", ())] == 0


@pytest.fixture
def two_processes(simulator, tmp_path):
    """Two server processes on one host, sharing a metrics directory as deployed."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    servers = [
        start_server(
            simulator, tmp_path / f"daphne-{n}.log", PROMETHEUS_MULTIPROC_DIR=str(directory)
        )
        for n in (1, 2)
    ]
    yield [url for url, _ in servers], [process for _, process in servers]
    for _, process in servers:
        stop_process(process)


def test_each_process_answers_for_every_live_process_on_the_host(two_processes, alice, simulator):
    (first, second), (first_process, _) = two_processes
    cases = [ClinicalCase.objects.create(owner=alice, chief_complaint=f"Case {n}") for n in (1, 2)]
    simulator.configure(tps=100, words=30)
    for url, case in zip((first, second), cases, strict=True):
        with httpx.Client(base_url=url, timeout=30) as http:
            log_in(http, alice)
            http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
            follow(http, f"/cases/{case.pk}/stages/summary/events")
    done = ("medhastra_generations_total", (("kind", "stage"), ("stage", "summary"),
                                            ("status", "complete")))  # fmt: skip
    assert scrape(first)[done] == scrape(second)[done] == 2

    simulator.configure(tps=2, words=200)
    with httpx.Client(base_url=first, timeout=30) as http:
        log_in(http, alice)
        http.post(f"/cases/{cases[0].pk}/stages/summary/run", headers=HTMX)
        with http.stream("GET", f"/cases/{cases[0].pk}/stages/summary/events") as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()  # kept: a closed iterator would close the stream
            while next(lines) != "event: snapshot":
                pass
            seen = scrape(second)
            assert seen[("medhastra_open_event_streams", ())] == 1
            assert seen[("medhastra_running_generations", ())] == 1
            http.post(f"/cases/{cases[0].pk}/stages/summary/cancel", headers=HTMX)
    stop_process(first_process)  # its gauges leave the sums; what it counted stays
    seen = scrape(second)
    assert seen[("medhastra_open_event_streams", ())] == 0
    assert seen[("medhastra_running_generations", ())] == 0
    assert seen[done] == 2


def test_a_killed_process_leaves_no_gauge_once_its_replacement_starts(
    two_processes, alice, simulator, tmp_path, server_url
):
    """Killed (or out of memory), a process cannot say it died: its replacement clears it."""
    (first, second), (first_process, _) = two_processes
    labels = (("kind", "stage"), ("stage", "summary"), ("status", "interrupted"))
    counted = ("medhastra_generations_total", labels)
    timed = ("medhastra_stage_duration_seconds_count", ())
    before = scrape(server_url)[counted]  # the suite's server counted earlier tests' too
    timed_before = scrape(server_url)[timed] + scrape(second)[timed]  # both hosts'
    case = ClinicalCase.objects.create(owner=alice, chief_complaint="Case")
    simulator.configure(tps=2, words=200)
    with httpx.Client(base_url=first, timeout=30) as http:
        log_in(http, alice)
        http.post(f"/cases/{case.pk}/stages/summary/run", headers=HTMX)
        with http.stream("GET", f"/cases/{case.pk}/stages/summary/events") as stream:
            lines = stream.iter_lines()
            while next(lines) != "event: snapshot":
                pass
            first_process.kill()
            first_process.wait()
    assert scrape(second)[("medhastra_open_event_streams", ())] == 1  # still counted
    url, replacement = start_server(
        simulator, tmp_path / "daphne-3.log", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics")
    )
    try:
        seen = scrape(url)
        assert seen[("medhastra_open_event_streams", ())] == 0
        assert seen[("medhastra_running_generations", ())] == 0
        interrupted = case.stage_runs.filter(status="interrupted")
        wait_until(interrupted.exists, 20, "a live process's sweeper ends the dead one's work")

        def count(metric) -> float:  # by whichever sweeper got there: this host's or the
            return scrape(url)[metric] + scrape(server_url)[metric]  # suite's (another host)

        # Counted just after the ending is saved: a scrape may fall in between.
        wait_until(lambda: count(counted) == before + 1, 5, "the interrupted run is counted once")
        wait_until(lambda: count(timed) == timed_before + 1, 5, "and its duration, once")
    finally:
        stop_process(replacement)
