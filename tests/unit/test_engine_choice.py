from workflow.llm import get_engine
from workflow.llm.demo import LABEL, OfflineDemoEngine
from workflow.llm.openai_engine import OpenAIEngine


def test_without_an_llm_the_offline_demo_engine_answers(settings):
    settings.LLM_BASE_URL = settings.LLM_API_KEY = None
    engine = get_engine()
    assert isinstance(engine, OfflineDemoEngine) and engine.label == LABEL


def test_a_base_url_or_a_key_selects_the_openai_compatible_engine(settings):
    settings.LLM_BASE_URL, settings.LLM_API_KEY, settings.LLM_MODEL = (
        "http://localhost:11434/v1",
        None,
        "llama3.1",
    )
    engine = get_engine()
    assert isinstance(engine, OpenAIEngine)
    assert engine.label == "llama3.1"  # what clinicians see: never the provider's URL
