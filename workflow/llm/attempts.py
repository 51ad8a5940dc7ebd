"""Provider attempts: an engine's stream of chunks (or its whole answer, in batch mode) with
retries, backoff and time limits.

An attempt that fails before its first token is retried with backoff (a 429's
Retry-After wins); once text has come, a failure ends the stream, since the text is
kept and Continue can carry on from it.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

from workflow.llm.base import Chunk, Engine, Limits, LLMRequest
from workflow.llm.errors import (
    DeadlineExceeded,
    FirstTokenTimeout,
    IdleTimeout,
    backoff_delay,
    retryable,
)

# Told of each retry: the error that caused it and the number of the coming attempt.
OnRetry = Callable[[BaseException, int], Awaitable[None]]


async def chunks(
    engine: Engine, request: LLMRequest, limits: Limits, on_retry: OnRetry, deadline: float
) -> AsyncIterator[Chunk]:
    """The answer's chunks, from as many attempts as it takes and the limits allow, until
    `deadline` (the event loop's time)."""
    for attempt in range(1, limits.attempts + 1):
        started = False
        try:
            async with aclosing(engine.stream(request)) as stream:
                while (chunk := await _next(stream, started, deadline, limits)) is not None:
                    started = started or bool(chunk.content or chunk.reasoning)
                    yield chunk
            return
        except Exception as exc:
            if started or not retryable(exc) or attempt == limits.attempts:
                raise
            await on_retry(exc, attempt + 1)
            delay = backoff_delay(exc, attempt, limits.backoff, limits.backoff_max)
            await asyncio.sleep(min(delay, _left(deadline)))


async def whole(
    engine: Engine, request: LLMRequest, limits: Limits, on_retry: OnRetry, deadline: float
) -> Chunk:
    """The whole answer in one response (batch mode), with the same retries and backoff,
    by `deadline`."""
    attempt = 1
    while True:
        try:
            async with asyncio.timeout(_left(deadline)):
                return await engine.answer(request, wait=_left(deadline))
        except TimeoutError:
            raise DeadlineExceeded() from None
        except Exception as exc:
            if not retryable(exc) or attempt == limits.attempts:
                raise
            delay = backoff_delay(exc, attempt, limits.backoff, limits.backoff_max)
            attempt += 1
            await on_retry(exc, attempt)
            await asyncio.sleep(min(delay, _left(deadline)))


async def _next(
    stream: AsyncIterator[Chunk], started: bool, deadline: float, limits: Limits
) -> Chunk | None:
    """The next chunk (None at the end), within the first-token or idle timeout and the
    deadline."""
    wait = limits.idle_timeout if started else limits.first_token_timeout
    too_slow = IdleTimeout if started else FirstTokenTimeout
    if _left(deadline) < wait:
        wait, too_slow = _left(deadline), DeadlineExceeded
    try:
        async with asyncio.timeout(wait):
            return await anext(stream, None)
    except TimeoutError:
        raise too_slow() from None


def _left(deadline: float) -> float:
    return max(0.0, deadline - asyncio.get_running_loop().time())
