"""The one interface every LLM engine offers."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer: text, the model's separate reasoning, or the end."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class LLMRequest:
    messages: list[dict[str, str]]
    # What the offline demo engine writes from, since it cannot read the prompt.
    stage_key: str | None = None
    case_facts: list[tuple[str, str]] = field(default_factory=list)
    question: str = ""


class Engine(Protocol):
    label: str

    def stream(self, request: LLMRequest) -> AsyncIterator[Delta]: ...

    async def complete(self, request: LLMRequest) -> str: ...
