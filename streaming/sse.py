"""Server-sent events: encoding and parsing per the WHATWG HTML standard (section 9.2)."""

import re
from dataclasses import dataclass, field

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    data: str = ""
    event: str = "message"
    id: str | None = None


def encode(data: str, *, event: str | None = None, id: str | int | None = None) -> str:
    """One event as wire text; multi-line data becomes several `data:` lines."""
    lines = []
    if event is not None:
        _check_field("event", event)
        lines.append(f"event: {event}")
    if id is not None:
        _check_field("id", str(id))
        lines.append(f"id: {id}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return "\n".join(lines) + "\n\n"


def retry(milliseconds: int) -> str:
    """The reconnection delay the client should use."""
    return f"retry: {int(milliseconds)}\n\n"


def comment(text: str = "") -> str:
    """A comment line: ignored by clients, keeps proxies and the connection alive."""
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)) + "\n"


def _check_field(name: str, value: str) -> None:
    if _LINE_BREAK.search(value) or "\0" in value:
        raise ValueError(f"An SSE {name} cannot contain a line break or NUL.")


@dataclass
class Parser:
    """Incremental parser: feed it text as it arrives, get back the dispatched events."""

    last_event_id: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _pending_cr: bool = False

    def feed(self, text: str) -> list[Event]:
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across two chunks
        self._pending_cr = text.endswith("\r")
        self._buffer += text
        *lines, self._buffer = _LINE_BREAK.split(self._buffer)
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return Event(data="\n".join(data), event=event or "message", id=self.last_event_id)
