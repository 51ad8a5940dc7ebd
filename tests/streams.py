"""Reading a stage's event stream as the page does: snapshots replace, deltas append."""

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx

from streaming.sse import Event, Parser

_DELTA = re.compile(
    r'<div hx-swap-oob="beforeend:#(?:stage-run|chat-message)-\d+-(?P<channel>\w+)">'
    r"<span>(?P<text>.*?)</span></div>",
    re.S,
)


class _TextOf(HTMLParser):
    """The text inside the first element carrying attribute `name`."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name, self.depth, self.parts, self.found = name, 0, [], False

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += 1
        elif not self.found and any(key == self.name for key, _ in attrs):
            self.depth, self.found = 1, True

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)


def text_of(fragment: str, attribute: str) -> str | None:
    parser = _TextOf(attribute)
    parser.feed(fragment)
    return "".join(parser.parts) if parser.found else None


def squash(text: str) -> str:
    return " ".join(text.split())


@dataclass
class PageView:
    """The reasoning and summary a page would show after applying the events so far."""

    reasoning: str = ""
    summary: str = ""
    events: list[Event] = field(default_factory=list)

    def apply(self, event: Event) -> None:
        self.events.append(event)
        if event.event == "delta":
            for match in _DELTA.finditer(event.data):
                name = match["channel"]
                if name in ("reasoning", "summary"):
                    setattr(self, name, getattr(self, name) + html.unescape(match["text"]))
        elif event.data:
            for name in ("reasoning", "summary"):
                text = text_of(event.data, f"data-{name}")
                if text is not None:
                    setattr(self, name, text)

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
        for chunk in response.iter_text():
            for event in parser.feed(chunk):
                view.apply(event)
                count += 1
                if event.event == "done" or (stop_after and count >= stop_after):
                    return view, parser
    return view, parser
