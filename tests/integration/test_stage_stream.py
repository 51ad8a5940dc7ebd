"""A stage run through the real openai SDK against the simulator, read as a client would."""

import asyncio
import contextlib
import gc
import re
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import RequestFactory

from streaming.sse import Parser
from tests.conftest import run_async, wait_until
from tests.llm_simulator import answer, tokens
from tests.streams import follow, routed, squash
from workflow import events, fragments
from workflow.models import StageRun
from workflow.stages import CONTINUE

pytestmark = pytest.mark.django_db(transaction=True)


def _run(http, case, key="summary"):
    response = http.post(f"/cases/{case.pk}/stages/{key}/run", headers={"HX-Request": "true"})
    assert response.status_code == 200
    return f"/cases/{case.pk}/stages/{key}/events"


def test_it_streams_the_reasoning_and_the_summary(alice_http, case, simulator):
    simulator.configure(tps=100)
    view, _ = follow(alice_http, _run(alice_http, case))

    sent = simulator.sent()[-1]
    written = simulator.requests()[-1]["written"]["content"]  # as the app should split it:
    assert sent["reasoning"] == written.split("<detailed>")[1].split("</detailed>")[0]
    assert sent["summary"] == written.split("<summary>")[1].split("</summary>")[0]
    assert view.names[0] == "snapshot"
    assert view.names.count("delta") >= 5
    assert view.names[-1] == "done"
    assert view.streamed("reasoning") == sent["reasoning"]
    assert view.streamed("summary") == sent["summary"]
    assert squash(view.text("summary")) == squash(sent["summary"])
    run = StageRun.objects.get(case=case, stage_key="summary")
    assert run.status == "complete"
    assert (run.reasoning, run.summary) == (sent["reasoning"], sent["summary"])
    assert run.engine == "simulator"
    assert run.completion_tokens > 0
    assert run.first_token_at is not None and run.finished_at >= run.first_token_at


def test_a_started_stage_is_running_from_its_first_event(alice_http, case, simulator):
    simulator.configure(ttft=0.5)
    url = _run(alice_http, case)
    run = StageRun.objects.get(case=case, stage_key="summary")
    assert (run.status, run.engine) == ("running", "simulator")
    view, _ = follow(alice_http, url)

    first = view.events[0]
    assert first.event == "snapshot"
    assert 'id="reasoning-summary" class="reasoning" data-status="running"' in first.data
    assert "Waiting to start" not in first.data
    assert set(view.names[1:-1]) == {"delta"}  # nothing re-rendered before it ends
    assert view.names[-1] == "done"


def test_its_events_have_increasing_ids_and_the_sse_headers(alice_http, case, simulator):
    url = _run(alice_http, case)
    with alice_http.stream("GET", url) as response:
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-accel-buffering"] == "no"
    view, parser = follow(alice_http, url)
    ids = [int(event.id) for event in view.events]
    assert ids == sorted(ids)
    assert parser.retry == 1000


def test_the_prompt_holds_the_case(alice_http, case, simulator):
    follow(alice_http, _run(alice_http, case))
    prompt = simulator.requests()[-1]["messages"][-1]["content"]
    assert "Chest pain for 2 hours" in prompt
    assert "<detailed>" in prompt and "<summary>" in prompt


def test_a_reconnect_with_last_event_id_loses_and_repeats_nothing(alice_http, case, simulator):
    simulator.configure(tps=40, words=80)
    url = _run(alice_http, case)
    first, _ = follow(alice_http, url, stop_after=6)
    assert first.text("reasoning"), "some text arrived before the hang-up"
    time.sleep(0.5)  # generation goes on while nobody watches

    view, _ = follow(alice_http, url, first, last_event_id=first.events[-1].id)

    sent = simulator.sent()[-1]
    assert view.streamed("reasoning") == sent["reasoning"]
    assert view.streamed("summary") == sent["summary"]


@pytest.mark.parametrize("last_event_id", ["-5", "abc", "1e3", "99999999999999999999"])
def test_an_odd_last_event_id_gets_the_whole_state(alice_http, case, simulator, last_event_id):
    view, _ = follow(alice_http, _run(alice_http, case), last_event_id=last_event_id)
    assert view.names[0] == "snapshot" and view.names[-1] == "done"
    assert squash(view.text("reasoning")) == squash(simulator.sent()[-1]["reasoning"])


def test_a_reconnect_that_saw_everything_gets_only_done(alice_http, case, simulator):
    url = _run(alice_http, case)
    view, _ = follow(alice_http, url)
    again, _ = follow(alice_http, url, last_event_id=view.events[-1].id)
    assert again.names == ["done"]


def test_closing_the_stream_does_not_stop_generation(alice_http, case, simulator):
    simulator.configure(tps=50)
    follow(alice_http, _run(alice_http, case), stop_after=2)
    wait_until(
        lambda: StageRun.objects.get(case=case).status == "complete",
        20, "the run did not finish without a watcher",
    )  # fmt: skip
    assert StageRun.objects.get(case=case).reasoning == simulator.sent()[-1]["reasoning"]


def test_an_idle_stream_sends_heartbeats(alice_http, case, simulator):
    simulator.configure(ttft=2.5)
    _, parser = follow(alice_http, _run(alice_http, case))
    assert "heartbeat" in parser.comments


def test_a_disconnect_frees_the_stream(alice_http, case, simulator):
    simulator.configure(tps=20)
    url = _run(alice_http, case)
    follow(alice_http, url, stop_after=2)
    wait_until(
        lambda: "medhastra_open_event_streams 0.0" in alice_http.get("/metrics").text,
        why="the closed stream is still held by the server",
    )


def test_a_missing_summary_is_asked_for_separately(alice_http, case, simulator):
    simulator.configure(faults=["nosummary"])
    view, _ = follow(alice_http, _run(alice_http, case))
    summarising = simulator.requests()[-1]["messages"][-1]["content"]
    assert summarising.startswith("Summarise this problem representation")
    assert squash(view.text("summary")) == answer(simulator.requests()[-1]["messages"], words=60)


def test_the_models_separate_thinking_is_kept_apart(alice_http, case, simulator):
    simulator.configure(faults=["thinking"])
    view, _ = follow(alice_http, _run(alice_http, case))
    run = StageRun.objects.get(case=case)
    assert run.thinking == "Thinking it over first." == simulator.sent()[-1]["thinking"]
    assert view.streamed("thinking") == view.text("thinking") == "Thinking it over first."
    assert "Thinking it over" not in view.text("reasoning")


def _kept(run, requests) -> tuple[str, str]:
    """What the stage kept of each request's answer, one after the other."""
    sent = [routed(request) for request in requests]
    return "".join(s["reasoning"] for s in sent), "".join(s["summary"] for s in sent)


@pytest.mark.parametrize("token", [1, 2, 30, "within a tag"])
def test_a_dropped_provider_connection_is_carried_on_without_a_click(
    alice_http, case, simulator, token
):
    short_rest = token == "within a tag"
    if short_rest:  # the start of a tag is held back, as it may not be text
        follow(alice_http, _run(alice_http, case))  # the same prompt gets the same answer
        pieces = tokens(answer(simulator.requests()[-1]["messages"], words=60))
        # the last piece that ends inside a tag: in the summary's closing tag
        token = max(n for n, piece in enumerate(pieces, 1) if re.search("<[^>]*$", piece))
        simulator.configure(requests=[])
    simulator.configure(faults=[f"drop@{token}"], tps=25)  # the notice stays readable a while
    view, _ = follow(alice_http, _run(alice_http, case))
    run = StageRun.objects.filter(case=case).first()
    cut, carried_on = simulator.requests()
    assert run.status == "complete" and run.notice == ""
    assert carried_on["messages"][-2:] == [
        {"role": "assistant", "content": cut["written"]["content"]},
        {"role": "user", "content": CONTINUE},
    ]
    assert (run.reasoning, run.summary) == _kept(run, [cut, carried_on])
    assert view.streamed("reasoning") == run.reasoning
    assert view.streamed("summary") == run.summary
    notices = [e.data for e in view.events]  # the first snapshot, or a later event
    if not short_rest:  # a rest of a few characters may end before the page reads it
        assert any("connection to the AI provider was lost: continuing" in n for n in notices)


def test_a_second_drop_ends_the_stage_keeping_exactly_what_was_sent(alice_http, case, simulator):
    simulator.configure(faults=["drop@30", "drop@5"])  # LLM_AUTO_CONTINUE is 1
    view, _ = follow(alice_http, _run(alice_http, case))
    run = StageRun.objects.get(case=case)
    assert (run.status, run.error_code) == ("error", "connection_lost")
    assert (run.reasoning, run.summary) == _kept(run, simulator.requests())
    assert view.streamed("reasoning") == run.reasoning
    assert "The connection to the AI provider was lost." in view.events[-1].data
    assert "Traceback" not in view.events[-1].data


def test_a_connection_dropped_before_the_first_token_is_tried_again(alice_http, case, simulator):
    simulator.configure(faults=["drop@0"])
    view, _ = follow(alice_http, _run(alice_http, case))
    run = StageRun.objects.get(case=case)
    cut, again = simulator.sent()
    assert not any(cut.values())  # nothing was written before the cut
    assert run.status == "complete"
    assert (run.reasoning, run.summary) == (again["reasoning"], again["summary"])
    assert view.streamed("reasoning") == again["reasoning"]


def test_open_streams_leave_the_database_pool_to_everyone_else(alice_http, case, simulator):
    """More pages than the pool has connections (20) watch at once; the app still answers."""
    simulator.configure(tps=5, words=300)  # outlasts the test
    url = _run(alice_http, case)
    with contextlib.ExitStack() as streams:
        for _ in range(25):
            response = streams.enter_context(alice_http.stream("GET", url, timeout=10))
            assert response.status_code == 200
            parser = Parser()
            chunks = response.iter_text()
            while not any(event.event == "snapshot" for event in parser.feed(next(chunks))):
                pass
        assert alice_http.get(f"/cases/{case.pk}/", timeout=10).status_code == 200
    alice_http.post(f"/cases/{case.pk}/stages/summary/cancel")


def test_an_open_stream_keeps_none_of_the_fragments_it_sent(alice, case):
    """A page watches a stage for minutes: each snapshot (the sections, the stepper: about
    10 KB) is let go once sent, not held while the stream waits for the next event."""
    [run], _ = case.start_stage_runs(("summary",))
    request = RequestFactory().get("/")
    request.user = alice
    loaded = []

    def load(request, pk):
        snapshot = fragments.stage_run_snapshot(request, pk)
        loaded.append(weakref.ref(snapshot))
        return snapshot

    async def scenario():
        stream = events.events(request, run, load, last_event_id=None)
        assert (await anext(stream)).startswith("event: snapshot")  # sent
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)
        gc.collect()
        held = [ref() for ref in loaded if ref() is not None]
        assert not waiting.done()  # still open, waiting for the next event
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        return held

    held = run_async(scenario())
    assert len(loaded) == 1
    assert held == []


def _wait_for(runs, status: str) -> None:
    wait_until(runs.filter(status=status).exists, why=f"no run became {status}")


def test_a_reconnect_after_the_stage_was_run_again_shows_the_new_run(alice_http, case, simulator):
    simulator.configure(ttft=2.0)  # each run waits for its first token a while
    url = _run(alice_http, case)
    runs = StageRun.objects.filter(case=case).order_by("-pk")
    _wait_for(runs, "running")
    first, _ = follow(alice_http, url, stop_after=1)  # the page saw the run start
    alice_http.post(f"/cases/{case.pk}/stages/summary/cancel")
    _wait_for(runs, "cancelled")
    _run(alice_http, case)  # meanwhile, in another tab, the stage runs again
    _wait_for(StageRun.objects.filter(pk=runs.first().pk), "running")

    view, _ = follow(alice_http, url, first, last_event_id=first.events[-1].id)

    assert view.events[1].event == "snapshot", "the new run replaces what the page showed"
    sent = simulator.sent()[-1]
    assert view.streamed("reasoning") == sent["reasoning"]
    assert view.streamed("summary") == sent["summary"]


def test_deleting_the_case_ends_its_open_streams(alice_http, case, simulator):
    simulator.configure(tps=20, words=200)
    url = _run(alice_http, case)
    with ThreadPoolExecutor(1) as pool:
        following = pool.submit(follow, alice_http, url)
        wait_until(StageRun.objects.exclude(reasoning="").exists)
        case.delete()
        view, _ = following.result(timeout=15)

    assert view.names[-1] == "done"


def test_more_event_streams_than_database_connections_all_open_within_a_second(
    alice_http, case, simulator, settings
):
    """An open stream holds no database connection while it waits: past both pools' size,
    every new stream still opens at once, and so does a page."""
    simulator.configure(tps=5, words=200)  # a run that outlasts the test
    url = _run(alice_http, case)
    connections = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"] + 10
    streams = [alice_http.stream("GET", url) for _ in range(connections + 5)]
    with contextlib.ExitStack() as open_streams:
        for stream in streams:
            started = time.monotonic()
            response = open_streams.enter_context(stream)
            assert _first_event(response).event == "snapshot"
            assert time.monotonic() - started < 1, f"stream {streams.index(stream) + 1} opened late"
        started = time.monotonic()
        assert alice_http.get(f"/cases/{case.pk}/").status_code == 200
        assert time.monotonic() - started < 1, "a page while the streams are open"
    alice_http.post(f"/cases/{case.pk}/stages/summary/cancel")


def _first_event(response):
    parser = Parser()
    for chunk in response.iter_text():
        if events := parser.feed(chunk):
            return events[0]
