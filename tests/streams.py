"""Reading an event stream as the page does: full-state events replace, deltas append.

Each full-state event is checked against the text the stream built so far, before it
replaces it: the text built from deltas must be that event's text or the start of it, so a
gap or a repeat on the live stream fails even where the final re-render would hide it.
"""

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx

from streaming.router import ContentRouter
from streaming.sse import Event, Parser
from workflow.stages import CONTINUE

_DELTA = re.compile(
    r'<div hx-swap-oob="beforeend:#(?P<target>[\w-]+)"><span>(?P<text>.*?)</span></div>', re.S
)
_ATTRIBUTES = (
    "data-reasoning",
    "data-summary",
    "data-thinking",
    "data-reply",
    "data-reply-thinking",
)


class _Texts(HTMLParser):
    """The text of every element carrying one of _ATTRIBUTES, by `name:value`, with its id.

    The first element of a key wins: an event carries its own runs first, then the earlier
    runs they replaced (which the page marks so, in the chat)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.by_id: dict[str, str] = {}
        self.key: str | None = None
        self.id: str | None = None
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += 1
            return
        attrs = dict(attrs)
        for name in _ATTRIBUTES:
            if name in attrs:
                self.key, self.depth = f"{name.removeprefix('data-')}:{attrs[name]}", 1
                if self.key in self.texts:
                    self.key = None
                    return
                self.texts[self.key] = ""
                self.id = attrs.get("id")
                if self.id:
                    self.ids[self.id], self.by_id[self.id] = self.key, ""

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth and self.key:
            self.texts[self.key] += data
            if self.id:
                self.by_id[self.id] += data


def squash(text: str) -> str:
    return " ".join(text.split())


@dataclass
class PageView:
    """The texts a page would show after applying the events so far."""

    texts: dict[str, str] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)  # a streamed element's id: its key
    # The text streamed into each element (by id) and the last element of each key: a
    # finished run's markdown replaces what the page shows, not what was streamed.
    live: dict[str, str] = field(default_factory=dict)
    live_ids: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    responses: list[httpx.Headers] = field(default_factory=list)  # of each connection

    def apply(self, event: Event) -> None:
        self.events.append(event)
        if event.event == "delta":
            for match in _DELTA.finditer(event.data):
                target, text = match["target"], html.unescape(match["text"])
                self.texts[self.targets[target]] += text
                self.live[target] += text
        elif event.data:
            parser = _Texts()
            parser.feed(event.data)
            for target, key in parser.ids.items():
                truth, shown = parser.by_id[target], self.live.get(target, "")
                assert truth.startswith(shown), (
                    f"the live stream of #{target} lost or repeated text: it showed "
                    f"{shown[-80:]!r}, Postgres holds {truth[-80:]!r} ({event.event} {event.id})"
                )
                self.live[target], self.live_ids[key] = truth, target
            self.texts.update(parser.texts)
            self.targets.update(parser.ids)

    def text(self, kind: str, key: str = "summary") -> str:
        """E.g. text("reasoning", "differential"), text("reply", "12")."""
        return self.texts.get(f"{kind}:{key}", "")

    def streamed(self, kind: str, key: str = "summary") -> str:
        """The text the live stream built for the latest generation of `kind:key`, exactly
        (what `text` shows may have been re-rendered from Postgres since)."""
        target = self.live_ids.get(f"{kind}:{key}")
        return self.live[target] if target else ""

    @property
    def names(self) -> list[str]:
        return [event.event for event in self.events]


def follow(
    http: httpx.Client,
    url: str,
    view: PageView | None = None,
    *,
    last_event_id: str | None = None,
    stop_after: int | None = None,
) -> tuple[PageView, Parser]:
    """Read events into `view` until `done`, or until `stop_after` events (then hang up)."""
    view = view or PageView()
    parser = Parser()
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    count = 0
    with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        view.responses.append(response.headers)
        for chunk in response.iter_text():
            for event in parser.feed(chunk):
                view.apply(event)
                count += 1
                if event.event == "done" or (stop_after and count >= stop_after):
                    return view, parser
    return view, parser


def routed(request: dict) -> dict[str, str]:
    """What the app keeps of what the simulator wrote back to one request: a stage answer's
    `reasoning`, `summary`, `cant_miss` and `thinking` as the content router splits them, any
    other answer's `content`; a continuation's text only. A cut answer's last possible tag is
    held back, not kept."""
    written, messages = request["written"], request["messages"]
    content, thinking = written.get("content", ""), written.get("reasoning_content", "")
    router = ContentRouter()
    if messages[-1]["content"] == CONTINUE:  # goes on where the partial answer stopped
        router.feed(messages[-2]["content"])
        messages = messages[:-2]
    if "<detailed>" not in messages[-1]["content"]:
        return {"content": content, "thinking": thinking}
    pieces = router.feed(content) + (router.close() if request["complete"] else [])
    texts = {"reasoning": "", "summary": "", "cant_miss": "", "thinking": thinking}
    for channel, text in pieces:
        texts[channel] += text
    return texts
