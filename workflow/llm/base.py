"""The one interface every LLM engine offers."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from workflow.stages import CONTINUE


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


def is_continuation(messages: list[dict[str, str]]) -> bool:
    """Whether the request asks to carry on from the partial answer before it."""
    return len(messages) >= 2 and messages[-1]["content"] == CONTINUE


def remainder(full: str, messages: list[dict[str, str]]) -> str:
    """For a deterministic engine: what is left of `full` when asked to carry on from the
    partial answer in the second-to-last message (the whole of it otherwise)."""
    if is_continuation(messages):
        partial = messages[-2]["content"]
        if full.startswith(partial):
            return full[len(partial) :]
    return full
