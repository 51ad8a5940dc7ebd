"""The content router: splits a model's stream into the reasoning and the summary.

The model is asked for `<detailed>…</detailed>` then `<summary>…</summary>`, and for some
stages a `<cant_miss>…</cant_miss>` part between them. Tags may be split across chunks at
any point, may differ in case, and text may stand outside them (it counts as reasoning).
A model's separate reasoning field goes to `thinking`.
"""

from dataclasses import dataclass
from typing import Literal

Channel = Literal["reasoning", "summary", "thinking", "cant_miss"]
REASONING: Channel = "reasoning"
SUMMARY: Channel = "summary"
THINKING: Channel = "thinking"
CANT_MISS: Channel = "cant_miss"

_TAGS: dict[str, Channel] = {
    "<detailed>": REASONING,
    "</detailed>": REASONING,
    "<cant_miss>": CANT_MISS,
    "</cant_miss>": REASONING,
    "<summary>": SUMMARY,
    "</summary>": REASONING,
}


@dataclass
class ContentRouter:
    channel: Channel = REASONING
    _pending: str = ""
    _section_start: bool = True

    def feed(self, text: str, *, thinking: bool = False) -> list[tuple[Channel, str]]:
        """Route a chunk; returns `(channel, text)` pieces, adjacent ones merged."""
        if thinking:
            return [(THINKING, text)] if text else []
        out: list[tuple[Channel, str]] = []
        self._pending += text
        while self._pending:
            start = self._pending.find("<")
            if start == -1:
                self._emit(out, self._pending)
                self._pending = ""
                break
            self._emit(out, self._pending[:start])
            rest = self._pending[start:]
            lowered = rest.lower()
            tag = next((t for t in _TAGS if lowered.startswith(t)), None)
            if tag is not None:
                self.channel = _TAGS[tag]
                self._section_start = True
                self._pending = rest[len(tag) :]
            elif any(t.startswith(lowered) for t in _TAGS):
                self._pending = rest  # maybe the start of a tag: wait for more text
                break
            else:
                self._emit(out, "<")
                self._pending = rest[1:]
        return out

    def close(self) -> list[tuple[Channel, str]]:
        """The end of the stream: release text held back as a possible tag."""
        out: list[tuple[Channel, str]] = []
        self._emit(out, self._pending)
        self._pending = ""
        return out

    def _emit(self, out: list[tuple[Channel, str]], text: str) -> None:
        if self._section_start:
            text = text.lstrip()
            self._section_start = not text
        if not text:
            return
        if out and out[-1][0] == self.channel:
            out[-1] = (self.channel, out[-1][1] + text)
        else:
            out.append((self.channel, text))


@dataclass
class PlainRouter:
    """For untagged output (a chat reply): all content goes to one channel."""

    channel: str

    def feed(self, text: str, *, thinking: bool = False) -> list[tuple[str, str]]:
        if not text:
            return []
        return [(THINKING if thinking else self.channel, text)]

    def close(self) -> list[tuple[str, str]]:
        return []
