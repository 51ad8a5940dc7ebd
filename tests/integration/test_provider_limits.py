"""The provider's time limits through the real `openai` SDK: the deadline of a whole
answer, and the connect timeout."""

import asyncio
import socket

import openai
import pytest

from tests.conftest import run_async
from workflow.llm import Limits, LLMRequest, attempts
from workflow.llm.errors import DeadlineExceeded, describe
from workflow.llm.openai_engine import OpenAIEngine

REQUEST = LLMRequest([{"role": "user", "content": "Anything."}])


def _limits(**given) -> Limits:
    limits = dict(
        connect_timeout=5, first_token_timeout=5, idle_timeout=5, deadline=60,
        attempts=1, backoff=0.01, backoff_max=0.01, auto_continues=0,
    )  # fmt: skip
    return Limits(**(limits | given))


def _engine(base_url: str, limits: Limits) -> OpenAIEngine:
    return OpenAIEngine(
        base_url=base_url, api_key="test-key", model="simulator", max_tokens=100,
        connect_timeout=limits.connect_timeout, read_timeout=limits.idle_timeout,
    )  # fmt: skip


def _read(base_url: str, limits: Limits) -> tuple[str, BaseException | None, int]:
    """The text that came, what ended the answer, and the retries."""

    async def read():
        engine, text, retries = _engine(base_url, limits), [], []

        async def on_retry(exc, attempt):
            retries.append(attempt)

        deadline = asyncio.get_running_loop().time() + limits.deadline
        try:
            async for chunk in attempts.chunks(engine, REQUEST, limits, on_retry, deadline):
                text.append(chunk.content)
        except Exception as exc:
            return "".join(text), exc, len(retries)
        finally:
            await engine.close()
        return "".join(text), None, len(retries)

    return run_async(read())


def test_an_answer_past_its_deadline_ends_keeping_what_came(simulator):
    simulator.configure(tps=20, words=200)  # 20 s of answer
    text, ended, _ = _read(simulator.base_url, _limits(deadline=1))
    assert isinstance(ended, DeadlineExceeded)
    assert describe(ended)[0] == "deadline"
    assert text and simulator.requests()[0]["written"]["content"].startswith(text)


@pytest.fixture
def unanswered_address():
    """An address whose connection attempts are never answered: a listener whose queue
    is full."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued = []
        for _ in range(3):
            waiting = socket.socket()
            waiting.setblocking(False)
            waiting.connect_ex(listener.getsockname())
            queued.append(waiting)
        yield "http://{}:{}/v1".format(*listener.getsockname())
        for waiting in queued:
            waiting.close()


def test_a_provider_that_never_accepts_the_connection_times_out_and_is_retried(
    unanswered_address,
):
    _, ended, retries = _read(unanswered_address, _limits(connect_timeout=0.3, attempts=2))
    assert isinstance(ended, openai.APITimeoutError), repr(ended)
    assert describe(ended)[0] == "timeout"
    assert retries == 1
