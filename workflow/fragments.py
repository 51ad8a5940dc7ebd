"""What is sent to a page: the bundles of page partials that answer a start and that a
snapshot and an end carry, and each delta.

Every bundle is rendered from the workspace page's own partials with `hx-swap-oob`, so a
snapshot and a page load can never disagree. A delta, which no page load shows and every
event of every stream carries, is built here instead: from a template it cost four times
the CPU.
"""

from dataclasses import dataclass, field
from html import escape

from django.http import HttpRequest
from django.template.loader import render_to_string

from streaming.router import CANT_MISS, SUMMARY, THINKING
from workflow import cant_miss, markdown, workspace
from workflow.models import (
    ChatMessage,
    ClinicalCase,
    Generation,
    StageRun,
    Status,
    WorkflowRun,
)

PAGE = "workflow/workspace.html"


@dataclass
class Snapshot:
    """The state of a followed object, read from Postgres, and its fragments."""

    seq: int
    finished: bool
    html: str
    # The unfinished Markdown text the deltas continue, by element id (see `Deltas`).
    tails: dict[str, str] = field(default_factory=dict)


def render(request: HttpRequest, partial: str, context: dict) -> str:
    """One partial of the workspace page, as the page itself renders it."""
    return render_to_string(f"{PAGE}#{partial}", context, request)


def swaps(request: HttpRequest, partials: list[str], context: dict) -> str:
    """Partials that replace their counterparts on the page (`hx-swap-oob`)."""
    return "".join(render(request, p, {**context, "oob": True}) for p in partials)


def started(request: HttpRequest, followed: Generation | WorkflowRun, runs: list) -> str:
    """The answer to a start: follow its stream, and give the runs their chat bubbles. The
    stream's first event, a moment later, brings their sections and the stepper: rendering
    them here too would double what a start costs."""
    context = {"stream_url": workspace.events_url(followed)}
    html = swaps(request, ["stream-host", "notice"], context)
    return html + _to_chat(request, "summary-bubble", [{"run": r, "stage": r.stage} for r in runs])


def replying(request: HttpRequest, case: ClinicalCase, new_messages: list[ChatMessage]) -> str:
    """The answer to a question: show it, follow the reply's stream."""
    reply = new_messages[-1]
    context = {"stream_url": workspace.events_url(reply), "case_id": case.pk, "replying": True}
    html = swaps(request, ["stream-host", "chat-form", "notice"], context)
    return html + _to_chat(request, "chat-bubble", [{"message": m} for m in new_messages])


def refused(request: HttpRequest, notice: str) -> str:
    """The answer to a start that cannot happen now, with the reason."""
    return swaps(request, ["notice"], {"notice": notice})


def ask_about_identifiers(request: HttpRequest, form) -> str:
    """The answer to a question with likely identifiers in it: them, marked, and a choice."""
    return render(request, "identifiers-question", {"form": form})


def decided(request: HttpRequest, case: ClinicalCase, stage_key: str) -> str:
    """The answer to a sign-off: the stage in both panels, with the stages it made stale,
    the stepper, and what was decided in the notice."""
    now = workspace.Now.of(case)
    run = now.latest[stage_key]
    notice = f"{run.stage.title}: {run.signoff.get_decision_display().lower()}."
    html = _runs(request, [run], now) + _case(request, case, now, finished=False)
    return html + swaps(request, ["notice"], {"notice": notice})


class Deltas:
    """The deltas of one event stream. Each appends its text to its channel's element as
    written; once a Markdown channel's block is whole, the same event puts it in place
    rendered: its raw spans go, the rendered block and the unfinished rest come. So the
    page renders one block at a time, never the whole text again. The model's own
    thinking stays plain text."""

    def __init__(self) -> None:
        self.tails: dict[str, str] = {}

    def follow(self, snapshot: Snapshot) -> None:
        """Continue from what a snapshot shows."""
        self.tails = dict(snapshot.tails)

    def html(self, prefix: str, generation_id: int, texts: dict[str, str]) -> str:
        html = []
        for channel, text in texts.items():
            target = f"{prefix}-{generation_id}-{channel}"
            if channel == CANT_MISS:
                html.append(self._lane(target, text))
                continue
            if channel == SUMMARY:  # the can't-miss part, before it, is over: its last line too
                html.append(self._lane(f"{prefix}-{generation_id}-{CANT_MISS}", "\n", once=True))
            html.append(_append(target, f"<span>{escape(text)}</span>"))
            if channel == THINKING:
                continue
            done, self.tails[target] = markdown.advance(self.tails.get(target, ""), text)
            if done:
                rest = f"<span data-shown>{escape(self.tails[target])}</span>"
                html.append(f'<div hx-swap-oob="delete:#{target} > span"></div>')
                html.append(_append(target, markdown.render(done) + rest))
        return "".join(html)

    def _lane(self, target: str, text: str, *, once: bool = False) -> str:
        """The can't-miss lane again, once a line of its section is finished (`once`: a
        line its end finished, if it had not ended with one)."""
        written = self.tails.get(target, "")
        if once and (not written or written.endswith(("\n", "\r"))):
            return ""
        self.tails[target] = written = written + text
        if "\n" not in text and "\r" not in text:
            return ""
        lane = cant_miss.Lane.written(written, Status.RUNNING, finished=False)
        return render_to_string(f"{PAGE}#cant-miss-lane", {"lane": lane, "oob": True})


def _append(target: str, html: str) -> str:
    """`html` added to the end of the element with id `target` (an id made here, from a
    prefix, a pk and a channel name). Plain f-strings and `html.escape`, which every
    event of every stream runs: Django's `format_html` cost 5 % of the CPU at 100 streams."""
    return f'<div hx-swap-oob="beforeend:#{target}">{html}</div>'


def _tails(generations: list[Generation]) -> dict[str, str]:
    """The unfinished Markdown text of each generation being written, and the can't-miss
    section written so far, by element id."""
    being_written = [g for g in generations if not g.finished]
    tails = {
        f"{g.stream_prefix}-{g.pk}-{channel}": markdown.unfinished(getattr(g, channel))
        for g in being_written
        for channel in g.markdown_fields
    }
    runs = (g for g in being_written if isinstance(g, StageRun))
    return tails | {f"{run.stream_prefix}-{run.pk}-{CANT_MISS}": run.cant_miss for run in runs}


def stage_run_snapshot(request: HttpRequest, run_id: int) -> Snapshot:
    case = ClinicalCase.of_stage_run(run_id)
    now = workspace.Now.of(case)
    run = now.run(run_id)
    html = _runs(request, [run], now) + _case(request, case, now, run.finished)
    return Snapshot(run.seq, run.finished, html, _tails([run]))


def workflow_run_snapshot(request: HttpRequest, workflow_id: int) -> Snapshot:
    workflow = WorkflowRun.objects.select_related("case").get(pk=workflow_id)
    now = workspace.Now.of(workflow.case)
    runs = now.runs_of(workflow)
    html = _runs(request, runs, now) + _case(request, workflow.case, now, workflow.finished)
    return Snapshot(workflow.stream_seq(), workflow.finished, html, _tails(runs))


def chat_reply_snapshot(request: HttpRequest, message_id: int) -> Snapshot:
    message = ChatMessage.objects.select_related("case").get(pk=message_id)
    context = {"message": message, "case_id": message.case_id, "replying": not message.finished}
    html = swaps(request, ["chat-bubble", "chat-form"], context)
    if failed := message.failed_before():
        failed.superseded = True  # its Retry is moot
        html += swaps(request, ["chat-bubble"], {"message": failed})
    if message.finished:
        html += _next_stream(request, message.case)
    return Snapshot(message.seq, message.finished, html, _tails([message]))


def _runs(request: HttpRequest, runs: list[StageRun], now: workspace.Now) -> str:
    """The followed runs in both panels, and what they changed elsewhere on the page: the
    run each replaced is an earlier run now (its actions moot), and the stages built on
    their old output are stale."""
    html = "".join(_run(request, run, now) for run in runs)
    keys = {run.stage_key for run in runs}
    replaced = (now.runs[key][1] for key in keys if len(now.runs[key]) > 1)
    html += "".join(_bubble(request, run) for run in replaced if run.in_chat)
    stale = (run for run in now.stale() if run.stage_key not in keys)
    return html + "".join(_run(request, run, now) for run in stale)


def _bubble(request: HttpRequest, run: StageRun) -> str:
    return swaps(request, ["summary-bubble"], {"run": run, "stage": run.stage})


def _run(request: HttpRequest, run: StageRun, now: workspace.Now) -> str:
    """A stage run in the ReasoningPanel (with its earlier runs) and in the chat."""
    context = {
        "section": workspace.section(now, run.stage_key),
        "run": run,
        "stage": run.stage,
    }
    return swaps(request, ["reasoning-section", "summary-bubble"], context)


def _case(request: HttpRequest, case: ClinicalCase, now: workspace.Now, finished: bool) -> str:
    """The stepper and the can't-miss lane, and once the stream is over, the next thing
    for the page to follow."""
    context = {**workspace.stepper(case, now), "lane": workspace.lane(now)}
    html = swaps(request, ["stepper", "cant-miss-lane"], context)
    return html + _next_stream(request, case, now) if finished else html


def _next_stream(request: HttpRequest, case: ClinicalCase, now: workspace.Now | None = None) -> str:
    """The stream host, following whatever else of the case still runs."""
    url = workspace.next_stream_url(case, now or workspace.Now.of(case))
    return swaps(request, ["stream-host"], {"stream_url": url})


def _to_chat(request: HttpRequest, partial: str, contexts: list[dict]) -> str:
    bubbles = [render(request, partial, context) for context in contexts]
    return render(request, "append-to-chat", {"bubbles": bubbles})
