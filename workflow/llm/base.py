"""The one interface every LLM engine offers."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Chunk:
    """A piece of a streamed answer: text, the model's separate reasoning, or the usage."""

    content: str = ""
    reasoning: str = ""
    usage: Usage | None = None


@dataclass(frozen=True)
class LLMRequest:
    messages: list[dict[str, str]]
    # The last assistant message is a partial answer the model is asked to carry on from.
    continuing: bool = False

    def likely_usage(self, answer: str) -> Usage:
        """What a provider that reports no usage likely counted: ~4 characters a token."""
        prompt = sum(len(message["content"]) for message in self.messages)
        return Usage(prompt // 4, len(answer) // 4)


@dataclass(frozen=True)
class Limits:
    """How long to wait for a provider and how often to try (seconds)."""

    connect_timeout: float
    first_token_timeout: float
    idle_timeout: float
    deadline: float
    attempts: int
    backoff: float
    backoff_max: float
    auto_continues: int  # times an answer cut off midway is carried on without a click


class Engine(Protocol):
    label: str

    def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]: ...

    async def answer(self, request: LLMRequest, wait: float | None = None) -> Chunk: ...

    async def complete(self, request: LLMRequest) -> str: ...

    async def close(self) -> None: ...
