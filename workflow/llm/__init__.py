"""The LLM service layer: one interface (`Engine`), one module per provider."""

import asyncio
import weakref

from django.conf import settings

from workflow.llm.base import Chunk, Engine, Limits, LLMRequest, Usage

__all__ = [
    "Chunk",
    "Engine",
    "LLMRequest",
    "Limits",
    "Usage",
    "close_shared_engine",
    "get_engine",
    "limits",
    "offline",
    "shared_engine",
]

# A provider client's connections belong to the event loop that opened them.
_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Engine] = weakref.WeakKeyDictionary()


def limits() -> Limits:
    return Limits(**settings.LLM_LIMITS)


def offline() -> bool:
    """No LLM is configured: the offline demo engine answers."""
    return settings.LLM_BASE_URL is None and settings.LLM_API_KEY is None


def get_engine() -> Engine:
    """The configured LLM, or the offline demo engine when none is configured."""
    if offline():
        from workflow.llm.demo import OfflineDemoEngine

        return OfflineDemoEngine(words_per_second=settings.DEMO_WORDS_PER_SECOND)
    from workflow.llm.openai_engine import OpenAIEngine

    limit = limits()
    return OpenAIEngine(
        base_url=settings.LLM_BASE_URL,
        api_key=settings.LLM_API_KEY,
        model=settings.LLM_MODEL,
        connect_timeout=limit.connect_timeout,
        read_timeout=max(limit.first_token_timeout, limit.idle_timeout),
        max_tokens=settings.LLM_MAX_TOKENS,
    )


def shared_engine() -> Engine:
    """This process's engine, reused by every generation: building a provider client
    loads the CA bundle, about 22 ms of CPU on the event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _engines:
        _engines[loop] = get_engine()
    return _engines[loop]


async def close_shared_engine() -> None:
    """Close this process's provider client (its connections), if it made one."""
    engine = _engines.pop(asyncio.get_running_loop(), None)
    if engine is not None:
        await engine.close()
