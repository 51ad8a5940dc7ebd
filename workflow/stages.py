"""The stage catalogue: the six stages of clinical reasoning, their groups and prompts."""

from collections.abc import Collection, Iterable
from dataclasses import dataclass

OUTPUT_FORMAT = (
    "Answer in exactly two parts. First your full reasoning inside <detailed>…</detailed>, "
    "written in Markdown for a clinician. Then a concise summary of at most five short "
    "bullet points inside <summary>…</summary>. Write nothing outside the two parts."
)
# A stage that names the can't-miss diagnoses does so in a part of its own, which the page
# shows first (`workflow.cant_miss`).
OUTPUT_FORMAT_NAMING_CANT_MISS = (
    "Answer in exactly three parts. First your full reasoning inside "
    "<detailed>…</detailed>, written in Markdown for a clinician. Then the can't-miss "
    "diagnoses, those that must be excluded even if unlikely, inside "
    "<cant_miss>…</cant_miss>: one diagnosis per line, with nothing else on the line. Then "
    "a concise summary of at most five short bullet points inside <summary>…</summary>. "
    "Write nothing outside the three parts."
)

SYSTEM_PROMPT = (
    "You are MedhastraAI, a clinical reasoning assistant working beside a licensed "
    "clinician. Reason step by step from the case as given; name uncertainty, missing "
    "data and the findings that would change your mind. Never invent results that are not "
    "in the case. You support the clinician's judgement; you do not replace it."
)


@dataclass(frozen=True)
class Stage:
    key: str
    title: str
    group: str
    purpose: str
    instructions: str
    needs: tuple[str, ...] = ()
    names_cant_miss: bool = False


@dataclass(frozen=True)
class Group:
    key: str
    title: str
    stage_keys: tuple[str, ...]


_STAGE_LIST = (
    Stage(
        "summary",
        "Problem representation",
        "assessment",
        "A one-line problem representation and the key findings.",
        "Write the problem representation: one sentence with age, sex, the relevant risk "
        "factors, the tempo and the key syndrome, in semantic qualifiers (acute/chronic, "
        "unilateral/bilateral…). Then list the pertinent positives and negatives, and the "
        "data that are missing and would matter most.",
    ),
    Stage(
        "differential",
        "Differential diagnosis",
        "assessment",
        "A ranked differential with the can't-miss diagnoses.",
        "Give a ranked differential diagnosis of three to six conditions. For each: why it "
        "fits (supporting findings), what argues against it (refuting findings) and a rough "
        "likelihood. Then name separately the can't-miss diagnoses that must be excluded "
        "even if unlikely, and what would exclude each.",
        needs=("summary",),
        names_cant_miss=True,
    ),
    Stage(
        "diagnostics",
        "Diagnostic workup",
        "workup",
        "The tests to order and why.",
        "Propose the diagnostic workup, most urgent first. For each test: which diagnosis "
        "it confirms or excludes, how a result would change management, and whether it is "
        "needed now or can wait. Avoid tests that would not change management.",
        needs=("differential",),
    ),
    Stage(
        "risk",
        "Risk and disposition",
        "workup",
        "Red flags, risk stratification and disposition.",
        "List the red flags present and absent. Stratify risk with a validated score where "
        "one applies (name it, show the inputs you have and those you lack). Recommend a "
        "disposition (discharge, observation, admission, intensive care) with the reason.",
        needs=("differential",),
    ),
    Stage(
        "management",
        "Management plan",
        "plan",
        "The treatment plan.",
        "Write the management plan: immediate actions, treatments with doses where standard, "
        "monitoring, consultations, and what would make you escalate. Respect the listed "
        "allergies and interactions with the current medications.",
        needs=("differential", "risk"),
    ),
    Stage(
        "note",
        "Assessment and plan note",
        "plan",
        "An assessment-and-plan note for the chart.",
        "Write an assessment-and-plan note a clinician could paste into the chart: a brief "
        "assessment paragraph with the leading diagnosis and the differential, then a "
        "numbered plan by problem. Plain clinical language, no headings beyond the note's own.",
        needs=("management",),
    ),
)

STAGES: dict[str, Stage] = {stage.key: stage for stage in _STAGE_LIST}

GROUPS: dict[str, Group] = {
    key: Group(key, title, tuple(s.key for s in _STAGE_LIST if s.group == key))
    for key, title in (("assessment", "Assessment"), ("workup", "Workup"), ("plan", "Plan"))
}

RUN_ALL = Group("all", "All stages", tuple(STAGES))
RUNNABLE_GROUPS: dict[str, Group] = {**GROUPS, RUN_ALL.key: RUN_ALL}


def with_prerequisites(stage_keys: Iterable[str]) -> tuple[str, ...]:
    """These stages and every stage they need, transitively, in catalogue order."""
    wanted: set[str] = set()
    todo = list(stage_keys)
    while todo:
        key = todo.pop()
        if key not in wanted:
            wanted.add(key)
            todo.extend(STAGES[key].needs)
    return tuple(key for key in STAGES if key in wanted)


def to_run(stage_keys: Iterable[str], complete: Collection[str], *, again: bool) -> tuple[str, ...]:
    """What running these stages takes, in catalogue order: the stages they need that are
    not complete first; then these, all of them if `again` (a stage's Run), else those
    not complete (a group's: a stage complete and not stale is skipped)."""
    asked = set(stage_keys)
    return tuple(
        key for key in with_prerequisites(asked) if key not in complete or (again and key in asked)
    )


# A stage run with the earlier stages it needs is a workflow run named after the stage.
LEADING_TO: dict[str, Group] = {
    key: Group(key, f"Up to {stage.title.lower()}", with_prerequisites([key]))
    for key, stage in STAGES.items()
}
WORKFLOWS: dict[str, Group] = {**RUNNABLE_GROUPS, **LEADING_TO}


CASE = "# The case"
TASK = "# Your task: "


def case_text(facts: Iterable[tuple[str, str]]) -> str:
    return "\n".join(f"{label}: {value}" for label, value in facts)


def stage_messages(
    stage: Stage, facts: Iterable[tuple[str, str]], earlier: Iterable[tuple[Stage, str]]
) -> list[dict[str, str]]:
    """The chat messages that ask the model for one stage."""
    parts = [f"{CASE}\n{case_text(facts)}"]
    summaries = [f"## {s.title}\n{summary}" for s, summary in earlier]
    if summaries:
        parts.append("# Conclusions of the earlier stages\n" + "\n\n".join(summaries))
    output = OUTPUT_FORMAT_NAMING_CANT_MISS if stage.names_cant_miss else OUTPUT_FORMAT
    parts.append(f"{TASK}{stage.title}\n{stage.instructions}\n\n{output}")
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


# The chat history a reply's prompt carries, newest first, in characters (~6,000 tokens).
HISTORY_CHARACTERS = 24_000


def chat_messages(
    facts: Iterable[tuple[str, str]],
    earlier: Iterable[tuple[Stage, str]],
    conversation: Iterable[tuple[str, str]],
) -> list[dict[str, str]]:
    """A follow-up conversation: the case and the stage conclusions, then the chat so far:
    its newest turns, as many as HISTORY_CHARACTERS hold (the question always)."""
    context = [f"{CASE}\n{case_text(facts)}"]
    summaries = [f"## {s.title}\n{summary}" for s, summary in earlier]
    if summaries:
        context.append("# Conclusions of the workflow so far\n" + "\n\n".join(summaries))
    conversation = list(conversation)
    turns = newest(conversation, HISTORY_CHARACTERS)
    if len(turns) < len(conversation):
        left_out = len(conversation) - len(turns)
        them = "message" if left_out == 1 else f"{left_out} messages"
        context.append(
            f"# Earlier conversation\nThe oldest {them} of this conversation are left out "
            "here for length; the newest follow."
        )
    system = (
        f"{SYSTEM_PROMPT}\n\nThe clinician asks follow-up questions about this case. Answer "
        f"concisely in Markdown.\n\n" + "\n\n".join(context)
    )
    return [{"role": "system", "content": system}] + [
        {"role": role, "content": content} for role, content in turns
    ]


def newest(turns: list[tuple[str, str]], characters: int) -> list[tuple[str, str]]:
    """The newest turns whose text fits in `characters`, oldest dropped first; the last turn
    (the question) always, however long. Cut, the history starts with a question: some
    models' chat templates refuse one that starts with an answer."""
    kept, used = [], 0
    for role, content in reversed(turns):
        used += len(content)
        if kept and used > characters:
            break
        kept.append((role, content))
    kept.reverse()
    if len(kept) < len(turns):
        while len(kept) > 1 and kept[0][0] == "assistant":
            kept.pop(0)
    return kept


CONTINUE = (
    "Your answer above was cut off. Continue exactly where it stopped, without repeating "
    "anything already written, in the same format."
)


def continuing_messages(messages: list[dict[str, str]], partial: str) -> list[dict[str, str]]:
    """Asks the model to carry on from the partial answer it had written."""
    return [
        *messages,
        {"role": "assistant", "content": partial},
        {"role": "user", "content": CONTINUE},
    ]


def summarising_messages(stage: Stage, reasoning: str) -> list[dict[str, str]]:
    """Asks for the summary a model left out, from its own reasoning."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": f"Summarise this {stage.title.lower()} for a clinician in at most five "
            f"short bullet points. Reply with the bullets only.\n\n{reasoning}",
        },
    ]
