import asyncio
import functools
from datetime import datetime, timedelta
from itertools import chain

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Greatest
from django.urls import reverse
from django.utils import timezone
from psycopg import AsyncConnection, sql

from streaming import broker
from workflow import announcements, asyncdb, metrics, quotas
from workflow.llm import demo, offline
from workflow.stages import RUNNABLE_GROUPS, STAGES, WORKFLOWS, Stage, to_run


class Status(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    STALE = "stale"


class Mode(models.TextChoices):
    """How a generation is made, fixed when it starts (the `streaming` flag, or a provider
    that cannot stream): word by word, or the whole answer at once."""

    STREAM = "stream"
    BATCH = "batch"


class PhiChoice(models.TextChoices):
    """What a clinician chose for the likely identifiers in text they wrote, before it went
    to a provider off this machine (`workflow/phi.py`)."""

    NONE = "", "none found"
    REDACT = "redact", "replaced with placeholders"
    AS_WRITTEN = "as_written", "sent as written"


def phi_choice_field():
    # A database default too, for the processes of the release before during a deploy.
    return models.CharField(
        max_length=10, choices=PhiChoice.choices, blank=True, default="", db_default=""
    )


ACTIVE = (Status.QUEUED, Status.RUNNING)
RESUMABLE = (Status.ERROR, Status.CANCELLED, Status.INTERRUPTED)
ACTIVE_SQL = ", ".join(f"'{status}'" for status in ACTIVE)  # in the partial index's terms

STOPPED = "Stopped by the clinician."
BATCH_FALLBACK = "The AI provider could not stream this answer: it is written whole instead."
INTERRUPTED = "The server generating this stopped before it finished (a restart or a crash)."


def new_lease():
    return timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)


def running_on(engine: str, **fields) -> dict:
    """The fields of a generation created running, by this process's `engine`."""
    return {"status": Status.RUNNING, "started_at": timezone.now(), "engine": engine, **fields}


def lease_ran_out() -> Q:
    """Active, but the process generating it stopped renewing its lease: it died."""
    return Q(status__in=ACTIVE, lease_expires_at__lt=timezone.now())


# The active rows among ids %(pks)s, locked in id order first: two statements that update
# many generations at once (a save and a lease renewal) would otherwise lock the same rows
# in different orders, and deadlock.
LOCKED_IN_ORDER = (
    "WITH locked AS (SELECT id FROM {table} WHERE id = ANY(%(pks)s) "
    f"AND status IN ({ACTIVE_SQL}) "
    "ORDER BY id FOR UPDATE) "
)


async def _saved_and_announced(
    by_model: dict[type["Generation"], dict["Generation", dict[str, str]]],
) -> list["Generation"]:
    """Save each model's batch in one statement, then announce what was saved."""
    saved = []
    for model, batch in by_model.items():
        for generation in await model._append_rows(batch):
            saved.append(generation)
            # One after another: on this process's channel layer an announcement never
            # waits, so the followers hear of every text before the loop does anything else.
            await announcements.text(generation, batch[generation])
    return saved


class CannotStart(Exception):
    """Why a run cannot start now, in words for the clinician."""


class NoLongerActive(Exception):
    """The generation was deleted (with its case), or another process found its lease run
    out and marked it interrupted: whoever was generating it must stop writing to it."""


class ClinicalCaseQuerySet(models.QuerySet):
    def visible_to(self, user) -> "ClinicalCaseQuerySet":
        """The cases a user may see: their own."""
        return self.filter(owner=user) if user.is_authenticated else self.none()

    def with_last_activity(self) -> "ClinicalCaseQuerySet":
        """Annotated with `last_activity`: the last edit, stage run or chat message."""

        def newest(model):
            rows = model.objects.filter(case=OuterRef("pk")).order_by("-queued_at")
            return Coalesce(Subquery(rows.values("queued_at")[:1]), "updated_at")

        return self.annotate(
            last_activity=Greatest("updated_at", newest(StageRun), newest(ChatMessage))
        ).order_by("-last_activity")

    def with_progress(self) -> "ClinicalCaseQuerySet":
        """Annotated with `stages_complete`: the stages whose latest run is complete."""
        complete = (
            StageRun.objects.latest_of_their_stage()
            .filter(case=OuterRef("pk"), status=Status.COMPLETE)
            .order_by()
            .values("case")
            .annotate(count=Count("pk"))
            .values("count")
        )
        return self.annotate(stages_complete=Coalesce(Subquery(complete), 0))


FIELD_CHARACTERS = 5000  # about two pages


class ClinicalCase(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "female"
        MALE = "male"
        OTHER = "other"
        UNKNOWN = "unknown"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cases"
    )
    age = models.PositiveSmallIntegerField(null=True, blank=True)
    sex = models.CharField(max_length=10, choices=Sex.choices, default=Sex.UNKNOWN)
    chief_complaint = models.CharField(max_length=300)
    # Each field goes into every prompt: a bound keeps prompts (and their cost) bounded.
    history = models.TextField(blank=True, max_length=FIELD_CHARACTERS)
    medications = models.TextField(blank=True, max_length=FIELD_CHARACTERS)
    allergies = models.TextField(blank=True, max_length=FIELD_CHARACTERS)
    vitals = models.TextField(blank=True, max_length=FIELD_CHARACTERS)
    exam = models.TextField(blank=True, max_length=FIELD_CHARACTERS)
    results = models.TextField(blank=True, max_length=FIELD_CHARACTERS)
    question = models.TextField(
        blank=True, max_length=FIELD_CHARACTERS, help_text="What you want the reasoning to answer."
    )
    phi_choice = phi_choice_field()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ClinicalCaseQuerySet.as_manager()

    FIELDS = [
        "age",
        "sex",
        "chief_complaint",
        "history",
        "medications",
        "allergies",
        "vitals",
        "exam",
        "results",
        "question",
    ]

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        age = f"{self.age}-year-old " if self.age is not None else ""
        who = "patient" if self.sex == self.Sex.UNKNOWN else self.get_sex_display().lower()
        return f"{age}{who}: {self.chief_complaint}"

    def get_absolute_url(self) -> str:
        return reverse("workspace", args=[self.pk])

    def facts(self) -> list[tuple[str, str]]:
        """The filled-in fields as (label, value), in form order."""
        facts = []
        for name in self.FIELDS:
            value = self.get_sex_display() if name == "sex" else getattr(self, name)
            if value not in (None, ""):
                facts.append((self._meta.get_field(name).verbose_name.capitalize(), str(value)))
        return facts

    @classmethod
    def of_stage_run(cls, run_id: int) -> "ClinicalCase":
        """The case of a stage run; DoesNotExist once it is deleted."""
        for case in cls.objects.raw(_CASE_OF_STAGE_RUN, (run_id,)):
            return case
        raise cls.DoesNotExist

    def runs_by_stage(self) -> dict[str, list["StageRun"]]:
        """Every run of each stage, newest first."""
        runs: dict[str, list[StageRun]] = {key: [] for key in STAGES}
        for run in self.stage_runs.select_related("signoff__decided_by", "workflow_run"):
            runs[run.stage_key].append(run)
        return runs

    def latest_runs(self) -> dict[str, "StageRun"]:
        """The most recent run of each stage that has one."""
        return {run.stage_key: run for run in self.latest_runs_query()}

    def latest_runs_query(self) -> "StageRunQuerySet":
        latest = self.stage_runs.order_by("stage_key", "-queued_at", "-pk").distinct("stage_key")
        return latest.select_related("signoff__decided_by")

    def latest_run(self, stage_key: str) -> "StageRun | None":
        return self.stage_runs.of_stage(stage_key).first()

    def completed_runs(
        self, before: Stage | None = None, latest: dict[str, "StageRun"] | None = None
    ) -> list["StageRun"]:
        """The latest run of each stage (before `before`) that later ones may build on
        (`StageRun.usable`), in workflow order."""
        latest = self.latest_runs() if latest is None else latest
        keys = list(STAGES)
        if before is not None:
            keys = keys[: keys.index(before.key)]
        return [latest[key] for key in keys if key in latest and latest[key].usable]

    def builds_on(self, stage: Stage) -> tuple[list[Stage], list["StageRun"]]:
        """What a run of `stage` builds on, read once: the stages it needs that are not
        complete, and the complete runs before it."""
        latest = self.latest_runs()
        complete = {key for key, run in latest.items() if run.usable}
        needed = to_run([stage.key], complete, again=True)[:-1]
        return [STAGES[key] for key in needed], self.completed_runs(stage, latest)

    @transaction.atomic
    def start_stage_runs(
        self,
        stage_keys: tuple[str, ...],
        group_key: str | None = None,
        engine: str | None = None,
        mode: str = Mode.STREAM,
    ):
        """Queue runs of these stages (in a group run if `group_key`), for the runner,
        with the stages they need that are not complete first (`stages.to_run`): a stage
        run with others before it is a group run named after it.

        Given the `engine` of the process whose runner starts the first at once, that one
        is created running: a page that follows it never sees it queued, and its start
        costs no change. Returns the new stage runs and the group run, or raises
        CannotStart.
        """
        self.lock_for_a_start()
        latest = self.latest_runs()
        complete = {key for key, run in latest.items() if run.usable}
        asked, stage_keys = stage_keys, to_run(stage_keys, complete, again=group_key is None)
        if not stage_keys:
            title = RUNNABLE_GROUPS[group_key].title
            raise CannotStart(f"{title}: every stage is complete and up to date.")
        if group_key is None and len(stage_keys) > 1:
            group_key = asked[0]  # with the stages it needs first: streamed as a group
        # A run still queued or running is the latest of its stage.
        busy = next((latest[k] for k in stage_keys if k in latest and not latest[k].finished), None)
        if busy:
            raise CannotStart(f"{busy.stage.title} is already running.")
        self.check_quotas(starting=len(stage_keys))
        workflow = None
        if group_key:
            earlier = self.workflow_runs.filter(group_key=group_key).first()
            first_seq = earlier.stream_seq() + 1 if earlier else 0
            workflow = WorkflowRun.objects.create(case=self, group_key=group_key, seq=first_seq)
        runs = []
        order = list(STAGES)
        for key in stage_keys:
            # Only runs of the stages after it build on a stage: without any, none goes stale.
            if any(later in latest for later in order[order.index(key) + 1 :]):
                self.mark_stale_after(key)
            started, earlier_runs = {}, None
            if engine and not runs:
                earlier_runs = self.completed_runs(STAGES[key], latest)
                started = running_on(engine, inputs={e.stage_key: e.pk for e in earlier_runs})
            run = StageRun.objects.create(
                case=self,
                stage_key=key,
                workflow_run=workflow,
                seq=self._first_seq(key) if key in latest else 0,  # else its first run
                mode=mode,
                **started,
            )
            run.builds_on_runs = earlier_runs
            runs.append(run)
        return runs, workflow

    def lock_for_a_start(self) -> None:
        """Hold the case until the transaction ends (two starts at once, from two tabs or
        a double click, would otherwise both find nothing running), and read it as it is
        now: a start's first run reasons about it."""
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_CASE_FOR_A_START, (self.pk,))
            now = cursor.fetchone()
        if now is None:
            raise CannotStart("This case was deleted.")
        for name, value in zip((*self.FIELDS, "updated_at"), now, strict=True):
            setattr(self, name, value)

    def check_quotas(self, starting: int) -> None:
        """CannotStart if `starting` more generations would pass one of the quotas of the
        case's clinician, whom this holds until the transaction ends (starts on two of
        their cases at once must count each other)."""
        with connection.cursor() as cursor:
            cursor.execute(_lock_clinician_sql(), (self.owner_id,))
        now = timezone.now()
        active, tokens_today = spending(self.owner_id, quotas.day_start(now))
        refusal = quotas.refusal(
            quotas.Spending(active, None if offline() else tokens_today),
            starting,
            now,
            max_active=settings.MAX_ACTIVE_GENERATIONS,
            daily_budget=settings.DAILY_TOKEN_BUDGET,
        )
        if refusal:
            raise CannotStart(refusal)

    def _first_seq(self, stage_key: str) -> int:
        """A new run of a stage counts on from every earlier run of it (and a group's from
        its last run): a page that reconnects to the stage's stream with an earlier run's
        last event id must not take the new run for what it already shows."""
        with connection.cursor() as cursor:
            cursor.execute(_LAST_SEQ, (self.pk, stage_key))
            (earlier,) = cursor.fetchone()
        return earlier + 1 if earlier is not None else 0

    @transaction.atomic
    def ask(
        self, question: str, mode: str = Mode.STREAM, phi_choice: str = ""
    ) -> tuple["ChatMessage", "ChatMessage"]:
        """The clinician's question (with what they chose for its identifiers) and the
        queued reply, or CannotStart."""
        self._hold_for_a_reply()
        asked = ChatMessage.objects.create(
            case=self,
            role=ChatMessage.Role.USER,
            content=question,
            status=Status.COMPLETE,
            phi_choice=phi_choice,
        )
        reply = ChatMessage.objects.create(case=self, role=ChatMessage.Role.ASSISTANT, mode=mode)
        return asked, reply

    @transaction.atomic
    def retry_reply(self, reply_id: int, mode: str = Mode.STREAM) -> "ChatMessage":
        """A new reply to the same conversation; the failed one stays, as it was."""
        self._hold_for_a_reply()
        failed = self.chat_messages.get(pk=reply_id, role=ChatMessage.Role.ASSISTANT)
        if failed.status not in RESUMABLE:
            raise CannotStart("That reply is complete.")
        return ChatMessage.objects.create(case=self, role=ChatMessage.Role.ASSISTANT, mode=mode)

    def _hold_for_a_reply(self) -> None:
        self.lock_for_a_start()
        if self.chat_messages.active().exists():
            raise CannotStart("Wait for the current reply to finish, or stop it.")
        self.check_quotas(starting=1)

    @transaction.atomic
    def continue_stage_run(
        self, stage_key: str, engine: str | None = None, mode: str = Mode.STREAM
    ) -> "StageRun":
        """A new run that carries on from the partial text of the stage's last run (created
        running on `engine`, if given, as `start_stage_runs`)."""
        self.lock_for_a_start()
        last = self.stage_runs.select_related("signoff").of_stage(stage_key).first()
        if last is None or not last.continuable:
            raise CannotStart("There is nothing to continue: run the stage.")
        self.check_quotas(starting=1)
        return StageRun.objects.create(
            case=self,
            stage_key=stage_key,
            seq=self._first_seq(stage_key),
            continued_from=last,
            mode=mode,
            reasoning=last.reasoning,
            summary=last.summary,
            cant_miss=last.cant_miss,
            thinking=last.thinking,
            **running_on(engine, inputs=last.inputs) if engine else {"inputs": last.inputs},
        )

    def mark_stale_after(self, stage_key: str) -> int:
        """A stage is running again: the done runs that used its old output are stale."""
        return (
            self._done_runs()
            .filter(inputs__has_key=stage_key)
            .update(status=Status.STALE, seq=F("seq") + 1)
        )

    def mark_all_stale(self) -> int:
        """The case changed: every done run reasoned about the old case."""
        return self._done_runs().update(status=Status.STALE, seq=F("seq") + 1)

    def _done_runs(self) -> "StageRunQuerySet":
        """The runs that say something of the case now: complete, or stopped early and
        completed by a clinician (`StageRun.acceptable`)."""
        signed = (SignOff.Decision.EDITED, SignOff.Decision.ACCEPTED)  # accepted once edited
        completed = Q(status__in=RESUMABLE, signoff__decision__in=signed)
        return self.stage_runs.filter(Q(status=Status.COMPLETE) | completed)

    def active_stream(
        self, latest: dict[str, "StageRun"], workflow: "WorkflowRun | None"
    ) -> "Streamable | None":
        """What the page should follow now: a running group, else the newest active run
        (given the latest run of each stage and the unfinished group: a run still queued
        or running is always the latest of its stage)."""
        if workflow:
            return workflow
        replies = ChatMessage.objects.raw(_ACTIVE_REPLIES, (self.pk,))
        runs = chain(
            (run for run in latest.values() if not run.finished and run.workflow_run_id is None),
            replies,
        )
        return max(runs, key=lambda item: item.queued_at, default=None)


class Streamable:
    """Anything with an event stream: a `seq` raised by each change, a channel-layer group."""

    stream_prefix: str

    @classmethod
    def stream_group_of(cls, pk: int) -> str:
        return f"{cls.stream_prefix}.{pk}"

    @property
    def stream_group(self) -> str:
        return self.stream_group_of(self.pk)


class GenerationQuerySet(models.QuerySet):
    def active(self):
        """Queued or running: not ended yet."""
        return self.filter(status__in=ACTIVE)

    def expired(self):
        return self.filter(lease_ran_out())


class Generation(Streamable, models.Model):
    """Text an LLM generates for the clinician: its status, timings and what went wrong.

    Its life: queued → running (`start`; or created running, when its process starts it
    at once) → complete, stale, error, cancelled or interrupted (`end`, the one way out of
    queued or running). Every change raises `seq` and is announced to the generation's
    followers after it is persisted.
    """

    # Its labels in medhastra_generations_total.
    metric_kind: str
    metric_stage: str
    # Set by the workspace: a later run of its stage, or a later reply, exists.
    superseded = False
    # Its fields of Markdown text (the model's own thinking is shown as written).
    markdown_fields: tuple[str, ...]

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    # A database default too: a process of the release before still inserts rows without
    # it while a rolling restart is under way.
    mode = models.CharField(
        max_length=6, choices=Mode.choices, default=Mode.STREAM, db_default=Mode.STREAM
    )
    thinking = models.TextField(blank=True, help_text="The model's separate reasoning field.")
    seq = models.PositiveIntegerField(default=0, help_text="Raised by every persisted change.")
    engine = models.CharField(max_length=200, blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    notice = models.CharField(max_length=200, blank=True, help_text="E.g. a retry in progress.")
    cancel_requested = models.BooleanField(default=False)
    lease_expires_at = models.DateTimeField(
        default=new_lease, help_text="Renewed while a process generates it; then interrupted."
    )

    objects = GenerationQuerySet.as_manager()

    # The group stream's seq after this generation's last announced change, if any.
    group_seq: int | None = None

    class Meta:
        abstract = True

    @property
    def stop_group(self) -> str:
        """Where a stop request is signalled to the process generating it."""
        return f"stop.{self.stream_group}"

    @property
    def resumable(self) -> bool:
        """Ended early with text kept: the model can be asked to carry on."""
        return self.status in RESUMABLE and bool(self.text_so_far)

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE

    @property
    def time_to_first_token(self) -> float | None:
        if self.first_token_at and self.started_at:
            return (self.first_token_at - self.started_at).total_seconds()
        return None

    @property
    def duration(self) -> float | None:
        if self.finished_at and self.started_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def _no_longer_active(self) -> NoLongerActive:
        return NoLongerActive(f"{type(self).__name__} {self.pk} is no longer being generated.")

    async def group_stream(self) -> tuple[str, int] | None:
        """The group stream this generation is part of, with its seq now (None if none)."""
        return None

    async def start(self, **fields) -> bool:
        """Queued → running: a process begins generating it. False if it ended before it
        could start (a Stop); its status then says how."""
        fields |= {"status": Status.RUNNING, "started_at": timezone.now()}
        if await self._change(Q(status=Status.QUEUED), **fields):
            return True
        await self._refresh_status()
        return False

    async def set_notice(self, notice: str) -> None:
        """Tell the clinician what happens meanwhile (a retry), while it is generated."""
        if not await self._change(Q(status__in=ACTIVE), notice=notice):
            raise self._no_longer_active()

    async def fall_back_to_batch(self) -> None:
        """The provider could not stream it: it is made whole, in one answer, instead."""
        if not await self._change(Q(status__in=ACTIVE), mode=Mode.BATCH, notice=BATCH_FALLBACK):
            raise self._no_longer_active()

    async def _change(self, only_if: Q, **fields) -> bool:
        if not await self._changed(only_if, fields):
            return False
        await announcements.change(self)
        return True

    async def _changed(self, only_if: Q, fields: dict, on: AsyncConnection | None = None) -> bool:
        """Persist these fields if `only_if` holds, raising seq (as this instance does)."""
        mine = type(self).objects.filter(only_if, pk=self.pk)
        update = asyncdb.update_sql_of(
            mine, {"seq": F("seq") + 1, **fields}, returning="seq, started_at"
        )
        row = await asyncdb.fetch_row(*update, on)
        if row is None:
            return False
        self.seq, self.started_at = row  # this copy may predate the start (a group's runs)
        for name, value in fields.items():
            setattr(self, name, value)
        return True

    async def _refresh_status(self) -> None:
        """After losing a claim: how whoever won ended it (unchanged if it was deleted)."""
        mine = type(self).objects.filter(pk=self.pk)
        self.status = await mine.values_list("status", flat=True).afirst() or self.status

    async def append(self, texts: dict[str, str]) -> None:
        """Persist generated text, then announce it (`append_all` of this one)."""
        if texts and (failure := (await Generation.append_all({self: texts})).get(self)):
            raise failure

    @staticmethod
    async def append_all(
        batch: dict["Generation", dict[str, str]],
    ) -> dict["Generation", BaseException]:
        """Persist the text generated for each of these generations (appended in SQL,
        never rewritten), one statement per table, then announce it; returns the
        generations no longer being generated.

        It finishes even when a Stop cancels the caller meanwhile: a text persisted but not
        counted, or counted but not persisted, would be lost or written twice.
        """
        # Postgres text cannot hold NUL: one in a model's output would fail every save.
        batch = {g: {k: v.replace("\0", "") for k, v in t.items()} for g, t in batch.items()}
        by_model: dict[type[Generation], dict[Generation, dict[str, str]]] = {}
        for generation, texts in batch.items():
            by_model.setdefault(type(generation), {})[generation] = texts
        saving = asyncio.ensure_future(_saved_and_announced(by_model))
        try:
            saved = set(await asyncio.shield(saving))  # equal only if the same model and pk
        except asyncio.CancelledError:
            await saving
            raise
        return {g: g._no_longer_active() for g in batch if g not in saved}

    @classmethod
    async def _append_rows(cls, batch: dict["Generation", dict[str, str]]) -> list["Generation"]:
        """One UPDATE for every generation of this model in the batch; those it saved."""
        names = tuple(sorted({name for texts in batch.values() for name in texts}))
        generations = {g.pk: g for g in batch}
        texts = [[batch[g].get(name, "") for g in generations.values()] for name in names]
        params = {"pks": list(generations), "now": timezone.now()}
        params |= {f"text{n}": column for n, column in enumerate(texts)}
        saved = []
        for pk, seq, cancel_requested in await asyncdb.fetch_all(cls._append_sql(names), params):
            generation = generations[pk]
            generation.seq, generation.cancel_requested = seq, cancel_requested
            for name, text in batch[generation].items():
                setattr(generation, name, getattr(generation, name) + text)
            saved.append(generation)
        return saved

    @classmethod
    @functools.cache
    def _append_sql(cls, names: tuple[str, ...]) -> str:
        """Composed once into text: composing it again would escape its identifiers again,
        on every save (profiled at 5 % of the CPU with ten streams)."""
        columns = [sql.Identifier(cls._meta.get_field(name).column) for name in names]
        statement = sql.SQL(
            LOCKED_IN_ORDER + "UPDATE {table} AS t SET {appends}, seq = t.seq + 1, "
            "first_token_at = COALESCE(t.first_token_at, %(now)s) "
            "FROM unnest(%(pks)s::bigint[], {arrays}) AS v(id, {columns}) "
            "WHERE t.id = v.id AND t.id IN (SELECT id FROM locked) "
            "RETURNING t.id, t.seq, t.cancel_requested"
        ).format(
            table=sql.Identifier(cls._meta.db_table),
            appends=sql.SQL(", ").join(sql.SQL("{0} = t.{0} || v.{0}").format(c) for c in columns),
            arrays=sql.SQL(", ").join(
                sql.SQL("{}::text[]").format(sql.Placeholder(f"text{n}"))
                for n in range(len(columns))
            ),
            columns=sql.SQL(", ").join(columns),
        )
        return statement.as_string()

    async def end(
        self, status: str, *, code: str = "", message: str = "", only_if: Q | None = None, **fields
    ) -> bool:
        """The one way a generation stops being queued or running: claim it with a
        conditional UPDATE (while it is still queued or running, and `only_if` holds),
        record how it ended, and tell its followers.

        Called by the runner, Stop, the lease sweeper and a job's supervisor alike; False
        when another of them got there first (only the first ending counts), with the
        status it gave.
        """
        changes = {
            "status": status,
            "finished_at": timezone.now(),
            "error_code": code,
            "error_message": message,
            "notice": "",
            **fields,
        }
        if not await self._claim(changes, only_if or Q()):
            await self._refresh_status()
            return False
        self._count_end()
        await announcements.change(self)
        return True

    def _count_end(self) -> None:
        metrics.GENERATIONS.labels(self.metric_kind, self.metric_stage, self.status).inc()

    async def _claim(self, changes: dict, only_if: Q) -> bool:
        return await self._changed(only_if & Q(status__in=ACTIVE), changes)

    async def stop(self) -> None:
        """The clinician's Stop. Still queued, it ends at once; running, its process is
        asked to stop, and ends it keeping what it generated."""
        await type(self).objects.active().filter(pk=self.pk).aupdate(cancel_requested=True)
        queued = Q(status=Status.QUEUED)
        if not await self.end(Status.CANCELLED, code="cancelled", message=STOPPED, only_if=queued):
            await broker.signal(self.stop_group)

    @classmethod
    async def renew_leases(cls, pks: list[int]) -> set[int]:
        """Keep the leases of these generations while this process works on them; returns
        those the clinician asked to stop."""
        query = sql.SQL(
            LOCKED_IN_ORDER + "UPDATE {table} SET lease_expires_at = %(lease)s "
            "WHERE id IN (SELECT id FROM locked) RETURNING id, cancel_requested"
        ).format(table=sql.Identifier(cls._meta.db_table))
        rows = await asyncdb.fetch_all(query, {"pks": pks, "lease": new_lease()})
        return {pk for pk, stopping in rows if stopping}

    @classmethod
    async def astate_of(cls, pk: int) -> tuple[int, bool] | None:
        """Its seq and whether it is over, as Postgres holds them (None once deleted)."""
        found = await asyncdb.fetch_row(cls._read_sql("seq, status"), (pk,))
        return None if found is None else (found[0], found[1] not in ACTIVE)

    @classmethod
    async def still_active(cls, pks: list[int]) -> set[int]:
        """Which of these generations are still queued or running (read on the event loop)."""
        active = cls._read_sql("id", f"id = ANY(%s) AND status IN ({ACTIVE_SQL})")
        return {pk for (pk,) in await asyncdb.fetch_all(active, (pks,))}

    async def read_stop_flag(self) -> None:
        """Read back from Postgres whether the clinician asked to stop it."""
        flag = await asyncdb.fetch_row(self._read_sql("cancel_requested"), (self.pk,))
        self.cancel_requested = bool(flag and flag[0])

    @classmethod
    @functools.cache
    def _read_sql(cls, columns: str, where: str = "id = %s") -> str:
        """A SELECT of this model's table written out once (from literals only): every stage
        run and every event stream makes these, and the ORM compiled each again (136 µs of
        CPU for a one-row read, measured)."""
        return f"SELECT {columns} FROM {cls._meta.db_table} WHERE {where}"


class WorkflowRunQuerySet(models.QuerySet):
    def unfinished(self):
        return self.filter(finished_at=None)

    def abandoned(self):
        """Unfinished, yet none of its stage runs is queued or running: its process died
        between its last stage and its end."""
        return self.unfinished().exclude(stage_runs__status__in=ACTIVE)


class WorkflowRun(Streamable, models.Model):
    """A group of stages run in order by one request."""

    stream_prefix = "workflow-run"

    case = models.ForeignKey(ClinicalCase, on_delete=models.CASCADE, related_name="workflow_runs")
    group_key = models.CharField(
        max_length=20, choices=[(g.key, g.title) for g in WORKFLOWS.values()]
    )
    seq = models.PositiveIntegerField(default=0, help_text="Raised when the group finishes.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = WorkflowRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["case"], condition=Q(finished_at=None), name="workflowrun_unfinished"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_group_key_display()} for case {self.case_id}"

    @property
    def group(self):
        return WORKFLOWS[self.group_key]

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def stream_seq(self) -> int | None:
        with connection.cursor() as cursor:
            cursor.execute(_GROUP_STREAM_STATE, (self.pk,))
            row = cursor.fetchone()
        return row[0] if row else None

    @classmethod
    async def astream_seq_of(cls, pk: int) -> int | None:
        state = await cls.astate_of(pk)
        return state[0] if state else None

    @classmethod
    async def astate_of(cls, pk: int) -> tuple[int, bool] | None:
        """Its stream's seq and whether it is over (None once deleted)."""
        found = await asyncdb.fetch_row(_GROUP_STREAM_STATE, (pk,))
        return None if found is None else (found[0], found[1] is not None)

    async def end(self) -> bool:
        """Record that the group is over (once) and tell its followers; False if it already
        was."""
        finished = await WorkflowRun.objects.filter(pk=self.pk, finished_at=None).aupdate(
            seq=F("seq") + 1, finished_at=timezone.now()
        )
        if finished:
            await announcements.group_change(self.stream_group, await self.astream_seq_of(self.pk))
        return bool(finished)


class StageRunQuerySet(GenerationQuerySet):
    def of_stage(self, stage_key: str):
        return self.filter(stage_key=stage_key)

    def latest_of_their_stage(self):
        """The newest run of each stage of each case."""
        newer = StageRun.objects.filter(
            case=OuterRef("case"),
            stage_key=OuterRef("stage_key"),
            queued_at__gte=OuterRef("queued_at"),
        ).filter(Q(queued_at__gt=OuterRef("queued_at")) | Q(pk__gt=OuterRef("pk")))
        return self.exclude(Exists(newer))


class StageRun(Generation):
    """One run of one stage: the reasoning and summary it generated, and what it built on."""

    stream_prefix = "stage-run"
    metric_kind = "stage"
    markdown_fields = ("reasoning", "summary")
    stale_because = ""  # set by the workspace: what changed since it was written

    case = models.ForeignKey(ClinicalCase, on_delete=models.CASCADE, related_name="stage_runs")
    workflow_run = models.ForeignKey(
        WorkflowRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="stage_runs"
    )
    stage_key = models.CharField(max_length=20, choices=[(s.key, s.title) for s in STAGES.values()])
    reasoning = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    # The can't-miss diagnoses it named, one a line, for the stages that name them; a
    # database default too, for the processes of the release before during a deploy.
    cant_miss = models.TextField(blank=True, default="", db_default="")
    inputs = models.JSONField(
        default=dict, blank=True, help_text="The earlier stage runs whose summaries it used."
    )
    signoff = models.ForeignKey(
        "SignOff",
        on_delete=models.SET_NULL,  # never: a sign-off is never deleted
        null=True,
        blank=True,
        related_name="+",
        help_text="The latest clinician's decision on it, if any.",
    )
    continued_from = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="continuations",
        help_text="The run whose partial text this one carries on from.",
    )

    objects = StageRunQuerySet.as_manager()

    # The complete runs it builds on, when the start that created it running read them
    # (with the case) under the case's lock; None: the runner reads them when it starts.
    builds_on_runs: list["StageRun"] | None = None

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [
            models.Index(fields=["case", "stage_key", "-queued_at"]),
            models.Index(fields=["queued_at"], name="stagerun_queued_at"),  # a day's quotas
            models.Index(  # for the lease sweeper, which looks every few seconds
                fields=["lease_expires_at"],
                condition=Q(status__in=["queued", "running"]),
                name="stagerun_active_lease",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["case", "stage_key"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_run_per_stage",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_stage_key_display()} ({self.status}) for case {self.case_id}"

    @property
    def stage(self) -> Stage:
        return STAGES[self.stage_key]

    @property
    def metric_stage(self) -> str:
        return self.stage_key

    @property
    def text_so_far(self) -> str:
        return self.reasoning + self.summary

    @property
    def decision(self) -> str:
        """What a clinician decided of it: `none`, `accepted`, `edited` or `rejected`."""
        return self.signoff.decision if self.signoff_id else "none"

    @property
    def summary_in_use(self) -> str:
        """The summary later stages, the chat and exports use: the text a clinician signed
        off, else the model's."""
        return self.signoff.summary if self.signoff_id else self.summary

    @property
    def reasoning_in_use(self) -> str:
        return self.signoff.reasoning if self.signoff_id else self.reasoning

    @property
    def phi_choice_in_use(self) -> str:
        """What a clinician chose for the identifiers in their edit, if any (else the text
        goes as the case does)."""
        return self.signoff.phi_choice if self.signoff_id else ""

    @property
    def edited(self) -> bool:
        """A clinician changed the model's text (the original stays readable)."""
        return self.signoff_id is not None and (
            self.signoff.summary != self.summary or self.signoff.reasoning != self.reasoning
        )

    @property
    def incomplete(self) -> bool:
        """It has text the model stopped before it finished, which no clinician completed."""
        return self.resumable and not self.edited

    @property
    def acceptable(self) -> bool:
        """It may be accepted as it stands: complete, or completed by a clinician's edit."""
        return self.status == Status.COMPLETE or (self.status in RESUMABLE and self.edited)

    @property
    def usable(self) -> bool:
        """Later stages and the chat may build on it: acceptable, and not rejected."""
        return self.acceptable and self.decision != SignOff.Decision.REJECTED

    @property
    def continuable(self) -> bool:
        """The model can be asked to carry on from where it stopped: not once a clinician
        completed the text themselves."""
        return self.resumable and not self.edited

    @property
    def signable(self) -> bool:
        """A clinician may decide on it now: it is over, has text, and is not out of date."""
        ended = self.status in (Status.COMPLETE, *RESUMABLE)
        return ended and bool(self.text_so_far) and not self.superseded

    @property
    def in_chat(self) -> bool:
        """Its summary has a place in the chat: all but a run stopped before it started."""
        return not (self.status == Status.CANCELLED and self.started_at is None)

    async def group_stream(self) -> tuple[str, int] | None:
        if self.workflow_run_id is None:
            return None
        seq = await WorkflowRun.astream_seq_of(self.workflow_run_id)
        return None if seq is None else (WorkflowRun.stream_group_of(self.workflow_run_id), seq)

    async def _claim(self, changes: dict, only_if: Q) -> bool:
        if changes["status"] != Status.COMPLETE:
            return await super()._claim(changes, only_if)
        # Complete only if what it reasoned about still holds, decided holding the case as
        # edits and starts do: neither slips in between.
        async with asyncdb.transaction() as connection:
            if not await self._still_current(connection):
                changes["status"] = Status.STALE
            return await self._changed(only_if & Q(status__in=ACTIVE), changes, connection)

    async def _still_current(self, connection: AsyncConnection) -> bool:
        """Whether the case is as it read it and the runs it used are still the latest of
        their stages; locks the case (True if it was deleted: the claim then finds nothing)."""
        # Written out: Django compiles FOR UPDATE only on its own connection.
        row = await asyncdb.fetch_row(_LOCK_CASE, (self.case_id,), connection)
        if row is None:
            return True
        updated_at = row[0]
        latest_pks = dict(await asyncdb.fetch_all(_LATEST_RUNS, (self.case_id,), connection))
        return updated_at == self.case.updated_at and all(
            latest_pks.get(key) == pk for key, pk in self.inputs.items()
        )

    def _count_end(self) -> None:
        super()._count_end()
        if self.started_at is not None:  # else never started: no duration
            metrics.STAGE_DURATION.observe((self.finished_at - self.started_at).total_seconds())

    def raw_output(self) -> str:
        """The text as the model wrote it, tags included, for asking it to carry on."""
        raw = f"<detailed>{self.reasoning}"
        if self.cant_miss or self.summary:
            raw += "</detailed>"
        if self.cant_miss:
            raw += f"\n<cant_miss>{self.cant_miss}" + ("</cant_miss>" if self.summary else "")
        if self.summary:
            raw += f"\n<summary>{self.summary}"
        return raw


class ChatMessage(Generation):
    """A follow-up question in the ChatContainer, or the streamed reply to one."""

    stream_prefix = "chat-message"
    metric_kind = "reply"
    metric_stage = ""
    markdown_fields = ("content",)

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    case = models.ForeignKey(ClinicalCase, on_delete=models.CASCADE, related_name="chat_messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    phi_choice = phi_choice_field()  # of a question

    class Meta:
        ordering = ["queued_at", "id"]
        indexes = [
            models.Index(fields=["case", "queued_at"]),
            models.Index(fields=["queued_at"], name="chatmessage_queued_at"),  # a day's quotas
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status__in=["queued", "running"]),
                name="chatmessage_active_lease",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["case"],
                condition=Q(status__in=["queued", "running"]),
                name="one_reply_at_a_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} message in case {self.case_id}"

    @property
    def text_so_far(self) -> str:
        return self.content

    def failed_before(self) -> "ChatMessage | None":
        """The reply before this one, if it failed: only the latest reply offers Retry."""
        replies = self.case.chat_messages.filter(role=self.Role.ASSISTANT, pk__lt=self.pk)
        before = replies.order_by("-pk").first()
        return before if before and before.status in RESUMABLE else None


GENERATIONS = (StageRun, ChatMessage)
# Written out where compiling the ORM's query cost more CPU than running it.
_LAST_SEQ = f"SELECT max(seq) FROM {StageRun._meta.db_table} WHERE case_id = %s AND stage_key = %s"
_LOCK_CASE = f"SELECT updated_at FROM {ClinicalCase._meta.db_table} WHERE id = %s FOR UPDATE"
_LOCK_CASE_FOR_A_START = (
    "SELECT "
    + ", ".join(ClinicalCase._meta.get_field(name).column for name in ClinicalCase.FIELDS)
    + f", updated_at FROM {ClinicalCase._meta.db_table} WHERE id = %s FOR UPDATE"
)
# Every end of a stage's stream, and every page, asks what else of the case runs.
_ACTIVE_REPLIES = ChatMessage._read_sql("*", f"case_id = %s AND status IN ({ACTIVE_SQL})")
# The case of a stage run: each snapshot of the run's stream reads it.
_CASE_OF_STAGE_RUN = (
    f"SELECT c.* FROM {ClinicalCase._meta.db_table} c "
    f"JOIN {StageRun._meta.db_table} s ON s.case_id = c.id WHERE s.id = %s"
)
# A group stream's seq (its own plus its stage runs', as Postgres holds them now: every
# change to the group or to one of its runs raises it, whoever makes it) and its end.
# Written out: each text a group's run saves reads it, and the ORM compiled it every time.
_GROUP_STREAM_STATE = (
    f"SELECT w.seq + COALESCE(SUM(s.seq), 0), w.finished_at FROM {WorkflowRun._meta.db_table} w "
    f"LEFT JOIN {StageRun._meta.db_table} s ON s.workflow_run_id = w.id "
    "WHERE w.id = %s GROUP BY w.id"
)
# `ClinicalCase.latest_runs_query`, as (stage_key, id).
_LATEST_RUNS = (
    f"SELECT DISTINCT ON (stage_key) stage_key, id FROM {StageRun._meta.db_table} "
    "WHERE case_id = %s ORDER BY stage_key, queued_at DESC, id DESC"
)


def spending(owner_id: int, since: datetime) -> tuple[int, int]:
    """How many of a clinician's generations are queued or running, and the provider
    tokens theirs used since `since`: one statement over both kinds (every start makes it;
    the ORM's two aggregates were the costliest part of a start, profiled). Reads only those
    rows (by the partial index of active generations and the `queued_at` index), however
    long their history."""
    with connection.cursor() as cursor:
        cursor.execute(_spending_sql(), {"owner": owner_id, "since": since, "demo": demo.LABEL})
        return cursor.fetchone()


@functools.cache
def _lock_clinician_sql() -> str:
    return f"SELECT 1 FROM {get_user_model()._meta.db_table} WHERE id = %s FOR NO KEY UPDATE"


@functools.cache
def _spending_sql() -> str:
    recent = "g.queued_at >= %(since)s AND g.engine <> %(demo)s"
    each = " UNION ALL ".join(
        f"SELECT g.status IN ({ACTIVE_SQL}) AS active, CASE WHEN {recent} THEN "
        "COALESCE(g.prompt_tokens, 0) + COALESCE(g.completion_tokens, 0) ELSE 0 END AS tokens "
        f"FROM {model._meta.db_table} g JOIN {ClinicalCase._meta.db_table} c ON c.id = g.case_id "
        f"WHERE c.owner_id = %(owner)s AND (g.status IN ({ACTIVE_SQL}) OR ({recent}))"
        for model in GENERATIONS
    )
    return (
        "SELECT count(*) FILTER (WHERE active), COALESCE(sum(tokens), 0) "
        f"FROM ({each}) AS generations"
    )


def user_kept_as_id():
    """A user a record names, kept when the user is deleted: an id, not a key."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="+",
    )


class SignOff(models.Model):
    """A clinician's decision on a stage run, with the text decided on: accepted as the
    model wrote it (or as edited before), edited, or rejected. Append-only: Postgres
    refuses to UPDATE or DELETE a row (migration 0011's trigger); a new decision is a new
    row, which its run then points at. Like the audit, it outlives its run, its case and
    its clinician: the record of what was signed stays."""

    class Decision(models.TextChoices):
        ACCEPTED = "accepted"
        EDITED = "edited"
        REJECTED = "rejected"

    stage_run = models.ForeignKey(
        StageRun,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="signoffs",
    )
    case_id = models.BigIntegerField()
    decision = models.CharField(max_length=10, choices=Decision.choices)
    summary = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    reason = models.CharField(max_length=500, blank=True, help_text="Why it was rejected.")
    phi_choice = phi_choice_field()  # of an edit's text
    decided_by = user_kept_as_id()
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["case_id", "-decided_at"])]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} by user {self.decided_by_id}"

    @property
    def decider(self) -> str:
        """Who decided, as the page names them: full name, else username."""
        user = self.decided_by
        return (user.get_full_name() or user.get_username()) if user else "a deleted user"


def _count_from_zero() -> None:
    """Every ending each kind of generation can have is a series from zero (see FALLBACKS)."""
    for status in set(Status) - set(ACTIVE):
        metrics.GENERATIONS.labels(ChatMessage.metric_kind, ChatMessage.metric_stage, status)
        for key in STAGES:
            metrics.GENERATIONS.labels(StageRun.metric_kind, key, status)


class AuditEvent(models.Model):
    """One thing a user did to a case: ids and actions only, never case text or model
    output. Append-only: Postgres refuses to UPDATE or DELETE a row (migration 0010's
    trigger; a deployment also revokes TRUNCATE from the app's role). It outlives its case
    and its user: both are ids, not keys."""

    class Action(models.TextChoices):
        VIEWED = "viewed"
        RAN = "ran"
        STOPPED = "stopped"
        EDITED = "edited"
        EXPORTED = "exported"
        SIGNED_OFF = "signed_off", "Signed off"
        IDENTIFIERS = "identifiers", "Chose for identifiers"

    at = models.DateTimeField(default=timezone.now)
    user = user_kept_as_id()
    case_id = models.BigIntegerField()
    action = models.CharField(max_length=12, choices=Action.choices)
    detail = models.CharField(max_length=40, blank=True, help_text="A stage, a group, an export.")
    address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["case_id", "-at"]), models.Index(fields=["-at"])]

    def __str__(self) -> str:
        return f"User {self.user_id} {self.get_action_display().lower()} case {self.case_id}"


_count_from_zero()
