"""The offline demo engine: deterministic text from the case itself, when no LLM is set up.

It is not an LLM and says so on everything it writes. It reads the case and the stage
asked for from the prompt, as a model would, recognises a few common presentations from
the chief complaint and fills the stage's shape with their classic and can't-miss
differentials, so the workspace can be tried and tested without a model.
"""

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from workflow.llm.base import Chunk, LLMRequest, Usage
from workflow.stages import CASE, STAGES, TASK

LABEL = "offline demo engine — not an LLM"


@dataclass(frozen=True)
class Presentation:
    name: str
    keywords: tuple[str, ...]
    classic: tuple[str, ...]
    cant_miss: tuple[str, ...]
    tests: tuple[str, ...]
    red_flags: tuple[str, ...]
    first_steps: tuple[str, ...]


PRESENTATIONS = (
    Presentation(
        "chest pain",
        ("chest pain", "chest tightness", "chest pressure"),
        (
            "musculoskeletal chest pain",
            "gastro-oesophageal reflux",
            "stable angina",
            "pericarditis",
        ),
        (
            "acute coronary syndrome",
            "aortic dissection",
            "pulmonary embolism",
            "tension pneumothorax",
        ),
        (
            "12-lead ECG within 10 minutes",
            "high-sensitivity troponin at 0 and 1-3 h",
            "chest X-ray",
        ),
        ("pain radiating to the back", "haemodynamic instability", "new neurological deficit"),
        ("aspirin unless contraindicated", "continuous cardiac monitoring", "HEART score"),
    ),
    Presentation(
        "shortness of breath",
        ("shortness of breath", "breathless", "dyspnoea", "dyspnea"),
        ("asthma or COPD exacerbation", "community-acquired pneumonia", "heart failure"),
        ("pulmonary embolism", "tension pneumothorax", "acute coronary syndrome", "anaphylaxis"),
        ("pulse oximetry and blood gas", "chest X-ray", "ECG", "D-dimer if PE is possible"),
        ("SpO2 below 92 %", "silent chest", "inability to complete sentences"),
        ("oxygen to target saturations", "Wells score for PE", "bronchodilators if wheeze"),
    ),
    Presentation(
        "headache",
        ("headache", "head pain", "migraine"),
        ("migraine", "tension-type headache", "medication-overuse headache", "sinusitis"),
        (
            "subarachnoid haemorrhage",
            "bacterial meningitis",
            "giant cell arteritis",
            "venous sinus thrombosis",
        ),
        (
            "non-contrast CT head if thunderclap",
            "ESR and CRP if over 50",
            "lumbar puncture if CT negative",
        ),
        ("thunderclap onset", "fever with neck stiffness", "focal neurology", "papilloedema"),
        ("analgesia and antiemetic", "neurological observations", "Ottawa SAH rule"),
    ),
    Presentation(
        "abdominal pain",
        ("abdominal pain", "abdo pain", "stomach pain", "epigastric"),
        ("gastroenteritis", "biliary colic", "renal colic", "constipation"),
        (
            "appendicitis",
            "ruptured abdominal aortic aneurysm",
            "ectopic pregnancy",
            "bowel perforation",
        ),
        (
            "pregnancy test in anyone who could be pregnant",
            "FBC, CRP, LFTs, lipase",
            "urinalysis",
            "ultrasound or CT by the leading diagnosis",
        ),
        ("peritonism", "hypotension", "pulsatile mass", "pain out of proportion to examination"),
        (
            "analgesia",
            "nil by mouth until surgical review if peritonitic",
            "fluid resuscitation if shocked",
        ),
    ),
    Presentation(
        "fever",
        ("fever", "pyrexia", "febrile", "temperature"),
        ("viral illness", "urinary tract infection", "respiratory tract infection", "cellulitis"),
        ("sepsis", "bacterial meningitis", "neutropenic sepsis", "infective endocarditis"),
        ("blood cultures before antibiotics", "FBC, CRP, lactate", "urinalysis", "chest X-ray"),
        (
            "lactate above 2 mmol/L",
            "systolic BP below 100 mmHg",
            "new confusion",
            "non-blanching rash",
        ),
        ("sepsis screen", "antibiotics within one hour if sepsis is suspected", "fluids"),
    ),
    Presentation(
        "syncope",
        ("syncope", "collapse", "faint", "blackout"),
        ("vasovagal syncope", "orthostatic hypotension", "situational syncope"),
        ("cardiac arrhythmia", "aortic stenosis", "pulmonary embolism", "gastrointestinal bleed"),
        ("12-lead ECG", "lying and standing blood pressure", "FBC", "glucose"),
        ("syncope on exertion", "palpitations before the event", "family history of sudden death"),
        ("cardiac monitoring if high risk", "Canadian Syncope Risk Score"),
    ),
)

GENERIC = Presentation(
    "undifferentiated presentation",
    (),
    (
        "a common, self-limiting cause",
        "an exacerbation of a known condition",
        "a medication effect",
    ),
    ("sepsis", "an acute vascular event", "a metabolic emergency"),
    ("a full set of observations", "FBC, U&E, CRP, glucose", "an ECG"),
    ("abnormal vital signs", "new confusion", "severe or worsening pain"),
    ("treat the symptoms", "review the full history again", "senior review if unclear"),
)


def presentation_for(complaint: str) -> Presentation:
    complaint = complaint.lower()
    return next((p for p in PRESENTATIONS if any(k in complaint for k in p.keywords)), GENERIC)


def _bullets(items: tuple[str, ...]) -> str:
    return "\n".join(f"- {item}" for item in items)


def compose(stage_key: str | None, facts: list[tuple[str, str]]) -> str:
    """The whole answer for a stage, in the tag format asked of a real model."""
    fact = dict(facts)
    complaint = fact.get("Chief complaint", "the presenting complaint")
    complaint = complaint[:1].lower() + complaint[1:]
    p = presentation_for(complaint)
    age = f"{fact['Age']}-year-old" if "Age" in fact else ""
    sex = fact.get("Sex", "").lower().replace("unknown", "")
    who = " ".join(v for v in (age, sex) if v) or "patient"
    known = "\n".join(f"- **{label}:** {value}" for label, value in facts) or "- (no details given)"
    banner = (
        f"_Written by the {LABEL}: a template from the case's own fields, not clinical advice._"
    )
    detailed = {
        "summary": (
            f"{banner}\n\n### Problem representation\n{who.capitalize()} presenting with "
            f"{complaint}, read here as a {p.name}.\n\n### Findings in the case\n{known}\n\n"
            "### Missing data that would matter\n- Onset, duration and tempo\n- Full vital signs\n"
            "- Relevant past history and risk factors"
        ),
        "differential": (
            f"{banner}\n\n### Most likely\n{_bullets(p.classic)}\n\n### Can't-miss diagnoses\n"
            f"{_bullets(p.cant_miss)}\n\nEach can't-miss diagnosis stays on the list until a "
            "finding or test excludes it."
        ),
        "diagnostics": f"{banner}\n\n### Tests, most urgent first\n{_bullets(p.tests)}",
        "risk": (
            f"{banner}\n\n### Red flags to look for\n{_bullets(p.red_flags)}\n\n### Disposition\n"
            "Admit if any red flag is present; otherwise reassess after the first results."
        ),
        "management": f"{banner}\n\n### First steps\n{_bullets(p.first_steps)}",
        "note": (
            f"{banner}\n\n**Assessment:** {who} with {complaint}. Must exclude first: "
            f"{', '.join(p.cant_miss[:2])}; common alternatives: {', '.join(p.classic[:2])}."
            "\n\n**Plan:**\n"
            + "\n".join(f"{n}. {step}" for n, step in enumerate(p.tests[:2] + p.first_steps[:2], 1))
        ),
    }.get(stage_key or "", f"{banner}\n\nThe demo engine answers the workflow's stages only.")
    points = {
        "summary": [f"{who.capitalize()} with {complaint} ({p.name})"],
        "differential": [
            f"Must exclude first: {', '.join(p.cant_miss[:2])}",
            f"Common alternatives: {', '.join(p.classic[:2])}",
        ],
        "diagnostics": [f"First: {p.tests[0]}", f"Then: {', '.join(p.tests[1:3])}"],
        "risk": [f"Look for: {', '.join(p.red_flags[:2])}", "Admit if any red flag is present"],
        "management": [f"Start with: {', '.join(p.first_steps[:2])}"],
        "note": ["Assessment-and-plan note drafted for the chart"],
    }.get(stage_key or "", [])
    summary = "\n".join(f"- {point}" for point in [LABEL, *points])
    named = ""
    if stage_key and STAGES[stage_key].names_cant_miss:
        named = "\n<cant_miss>\n" + "\n".join(p.cant_miss) + "\n</cant_miss>"
    return f"<detailed>{detailed}</detailed>{named}\n<summary>{summary}</summary>"


def reply(question: str, facts: list[tuple[str, str]]) -> str:
    """The demo's answer to a follow-up question: it can only point back to the case."""
    p = presentation_for(dict(facts).get("Chief complaint", ""))
    return (
        f"_{LABEL}: it cannot reason about your question._ You asked: “{question.strip()}”. "
        f"For a {p.name}, keep in mind the can't-miss diagnoses: {', '.join(p.cant_miss)}. "
        "Point MedhastraAI at an LLM (see the README) for a real answer."
    )


def read_prompt(messages: list[dict[str, str]]) -> tuple[str | None, list[tuple[str, str]]]:
    """What a model would read in the prompt: the stage asked for (None in a chat) and
    the case's facts as (label, value)."""
    prompt = next((m["content"] for m in messages if f"{CASE}\n" in m["content"]), "")
    stage_key = next((s.key for s in STAGES.values() if f"{TASK}{s.title}\n" in prompt), None)
    facts: list[tuple[str, str]] = []
    for line in prompt.partition(f"{CASE}\n")[2].split("\n\n#")[0].splitlines():
        if fact := _FACT.match(line):
            facts.append((fact["label"], fact["value"]))
        elif facts:  # the next line of a value written over several
            facts[-1] = (facts[-1][0], f"{facts[-1][1]}\n{line}")
    return stage_key, facts


_FACT = re.compile(r"(?P<label>[A-Z][a-z]*(?: [a-z]+)*): (?P<value>.*)")


def _text(request: LLMRequest) -> str:
    stage_key, facts = read_prompt(request.messages)
    if stage_key is None:
        question = next(m["content"] for m in reversed(request.messages) if m["role"] == "user")
        return reply(question, facts)
    text = compose(stage_key, facts)
    if request.continuing:
        partial = next(m["content"] for m in reversed(request.messages) if m["role"] == "assistant")
        text = text.removeprefix(partial)
    return text


class OfflineDemoEngine:
    label = LABEL

    def __init__(self, *, words_per_second: float) -> None:
        self.delay = 1 / words_per_second if words_per_second > 0 else 0

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        words = _text(request).split(" ")
        for n, word in enumerate(words):
            await asyncio.sleep(self.delay)
            yield Chunk(content=word if n == 0 else " " + word)
        yield Chunk(usage=Usage(0, len(words)))

    async def answer(self, request: LLMRequest, wait: float | None = None) -> Chunk:
        """The whole answer at once, after about the time it would take to stream."""
        text = _text(request)
        words = text.count(" ") + 1
        await asyncio.sleep(self.delay * words)
        return Chunk(content=text, usage=Usage(0, words))

    async def complete(self, request: LLMRequest) -> str:
        text = compose(*read_prompt(request.messages))
        return text.partition("<summary>")[2].removesuffix("</summary>")

    async def close(self) -> None:
        pass
