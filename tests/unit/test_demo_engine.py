import asyncio

from streaming.router import CANT_MISS, REASONING, SUMMARY, ContentRouter
from workflow import cant_miss
from workflow.llm import LLMRequest
from workflow.llm.demo import LABEL, OfflineDemoEngine, compose
from workflow.stages import STAGES, stage_messages

FACTS = [
    ("Age", "58"),
    ("Sex", "Male"),
    ("Chief complaint", "Crushing chest pain"),
    ("Vitals", "HR 104"),
]


def _stream(stage_key: str) -> str:
    async def collect():
        engine = OfflineDemoEngine(words_per_second=0)
        return [
            d async for d in engine.stream(LLMRequest(stage_messages(STAGES[stage_key], FACTS, [])))
        ]

    deltas = asyncio.run(collect())
    assert deltas[-1].usage is not None
    return "".join(d.content for d in deltas)


def test_it_is_deterministic_and_streams_what_it_composes():
    assert _stream("summary") == _stream("summary") == compose("summary", FACTS)


def test_every_stage_is_labelled_and_has_reasoning_and_summary():
    for key in STAGES:
        router = ContentRouter()
        routed = router.feed(compose(key, FACTS)) + router.close()
        channels = {channel: text for channel, text in routed}
        assert LABEL in channels[REASONING] and LABEL in channels[SUMMARY], key


def test_it_writes_from_the_case_and_the_presentation():
    text = compose("differential", FACTS)
    assert "acute coronary syndrome" in text and "aortic dissection" in text
    summary = compose("summary", FACTS)
    assert "58-year-old male" in summary and "crushing chest pain" in summary
    assert "HR 104" in summary


def test_its_differential_names_the_cant_miss_diagnoses_in_their_own_part():
    router = ContentRouter()
    routed = router.feed(compose("differential", FACTS)) + router.close()
    named = "".join(text for channel, text in routed if channel == CANT_MISS)
    assert cant_miss.items(named, finished=True) == [
        "acute coronary syndrome",
        "aortic dissection",
        "pulmonary embolism",
        "tension pneumothorax",
    ]
    for key in STAGES.keys() - {"differential"}:
        assert "<cant_miss>" not in compose(key, FACTS)


def test_an_unknown_presentation_still_gets_a_safe_generic_answer():
    text = compose("differential", [("Chief complaint", "Itchy left ear")])
    assert "sepsis" in text and LABEL in text


def test_its_batch_call_returns_the_summary():
    summary = asyncio.run(
        OfflineDemoEngine(words_per_second=0).complete(
            LLMRequest(stage_messages(STAGES["summary"], FACTS, []))
        )
    )
    assert summary.startswith(f"- {LABEL}")
    assert "<" not in summary
