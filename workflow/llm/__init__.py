"""The LLM service layer: one interface (`Engine`), one module per provider."""

from django.conf import settings

from workflow.llm.base import Delta, Engine, LLMRequest, Usage

__all__ = ["Delta", "Engine", "LLMRequest", "Usage", "get_engine"]


def get_engine() -> Engine:
    """The configured LLM, or the offline demo engine when none is configured."""
    if settings.LLM_BASE_URL is None and settings.LLM_API_KEY is None:
        from workflow.llm.demo import OfflineDemoEngine

        return OfflineDemoEngine(words_per_second=settings.DEMO_WORDS_PER_SECOND)
    from workflow.llm.openai_engine import OpenAIEngine

    return OpenAIEngine(
        base_url=settings.LLM_BASE_URL,
        api_key=settings.LLM_API_KEY,
        model=settings.LLM_MODEL,
        connect_timeout=settings.LLM_CONNECT_TIMEOUT,
        read_timeout=settings.LLM_READ_TIMEOUT,
        max_tokens=settings.LLM_MAX_TOKENS,
    )
