"""Reading an event stream as the page does: full-state events replace, deltas append."""

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx

from streaming.sse import Event, Parser

_DELTA = re.compile(
    r'<div hx-swap-oob="beforeend:#(?P<target>[\w-]+)"><span>(?P<text>.*?)</span></div>', re.S
)
_ATTRIBUTES = ("data-reasoning", "data-summary", "data-thinking", "data-reply")


class _Texts(HTMLParser):
    """The text of every element carrying one of _ATTRIBUTES, by `name:value`, with its id."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.key: str | None = None
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += 1
            return
        attrs = dict(attrs)
        for name in _ATTRIBUTES:
            if name in attrs:
                self.key, self.depth = f"{name.removeprefix('data-')}:{attrs[name]}", 1
                self.texts[self.key] = ""
                if "id" in attrs:
                    self.ids[attrs["id"]] = self.key

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.texts[self.key] += data


def squash(text: str) -> str:
    return " ".join(text.split())


@dataclass
class PageView:
    """The texts a page would show after applying the events so far."""

    texts: dict[str, str] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    responses: list[httpx.Headers] = field(default_factory=list)  # of each connection

    def apply(self, event: Event) -> None:
        self.events.append(event)
        if event.event == "delta":
            for match in _DELTA.finditer(event.data):
                key = self.targets[match["target"]]
                self.texts[key] += html.unescape(match["text"])
        elif event.data:
            parser = _Texts()
            parser.feed(event.data)
            self.texts.update(parser.texts)
            self.targets.update(parser.ids)

    def text(self, kind: str, key: str = "summary") -> str:
        """E.g. text("reasoning", "differential"), text("reply", "12")."""
        return self.texts.get(f"{kind}:{key}", "")

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
