from datetime import timedelta
from itertools import chain

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Max, Q, Sum, Value
from django.db.models.functions import Coalesce, Concat, Greatest
from django.urls import reverse
from django.utils import timezone

from workflow.stages import RUNNABLE_GROUPS, STAGES, Stage


class Status(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    STALE = "stale"


ACTIVE = (Status.QUEUED, Status.RUNNING)
RESUMABLE = (Status.ERROR, Status.CANCELLED, Status.INTERRUPTED)


def new_lease():
    return timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)


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
            rows = model.objects.filter(case=models.OuterRef("pk")).order_by("-queued_at")
            return Coalesce(models.Subquery(rows.values("queued_at")[:1]), "updated_at")

        return self.annotate(
            last_activity=Greatest("updated_at", newest(StageRun), newest(ChatMessage))
        ).order_by("-last_activity")


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
    history = models.TextField(blank=True)
    medications = models.TextField(blank=True)
    allergies = models.TextField(blank=True)
    vitals = models.TextField(blank=True)
    exam = models.TextField(blank=True)
    results = models.TextField(blank=True)
    question = models.TextField(blank=True, help_text="What you want the reasoning to answer.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ClinicalCaseQuerySet.as_manager()

    FIELDS = ["age", "sex", "chief_complaint", "history", "medications", "allergies", "vitals",
              "exam", "results", "question"]  # fmt: skip

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        age = f"{self.age}-year-old " if self.age is not None else ""
        return f"{age}{self.get_sex_display().lower()}: {self.chief_complaint}"

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

    def runs_by_stage(self) -> dict[str, list["StageRun"]]:
        """Every run of each stage, newest first."""
        runs: dict[str, list[StageRun]] = {key: [] for key in STAGES}
        for run in self.stage_runs.order_by("-queued_at", "-id"):
            runs[run.stage_key].append(run)
        return runs

    def latest_runs(self) -> dict[str, "StageRun"]:
        """The most recent run of each stage that has one."""
        runs = self.stage_runs.order_by("stage_key", "-queued_at", "-id").distinct("stage_key")
        return {run.stage_key: run for run in runs}

    def completed_runs(self, before: Stage | None = None) -> list["StageRun"]:
        """The latest complete run of each stage (before `before`), in workflow order."""
        latest = self.latest_runs()
        keys = list(STAGES)
        if before is not None:
            keys = keys[: keys.index(before.key)]
        return [
            latest[key] for key in keys if key in latest and latest[key].status == Status.COMPLETE
        ]

    def missing_for(self, stage_keys: tuple[str, ...]) -> list[Stage]:
        """What running these stages in order needs that is not complete beforehand."""
        latest = self.latest_runs()
        needed = dict.fromkeys(need for key in stage_keys for need in STAGES[key].needs)
        return [
            STAGES[key]
            for key in needed
            if key not in stage_keys
            and (key not in latest or latest[key].status != Status.COMPLETE)
        ]

    @transaction.atomic
    def start_stage_runs(self, stage_keys: tuple[str, ...], group_key: str | None = None):
        """Queue runs of these stages (in a group run if `group_key`), for the runner.

        Returns the new stage runs and the group run, or raises CannotStart.
        """
        self.lock()
        missing = self.missing_for(stage_keys)
        if missing:
            names = " and ".join(stage.title for stage in missing)
            raise CannotStart(f"Run {names} first: {STAGES[stage_keys[0]].title} builds on it.")
        active = self.stage_runs.filter(stage_key__in=stage_keys, status__in=ACTIVE)
        busy = active.order_by("pk").first()
        if busy:
            raise CannotStart(f"{busy.stage.title} is already running.")
        workflow = None
        if group_key:
            earlier = self.workflow_runs.filter(group_key=group_key).first()
            first_seq = earlier.stream_seq() + 1 if earlier else 0
            workflow = WorkflowRun.objects.create(case=self, group_key=group_key, seq=first_seq)
        runs = []
        for key in stage_keys:
            self.mark_stale_after(key)
            runs.append(
                StageRun.objects.create(
                    case=self, stage_key=key, workflow_run=workflow, seq=self._first_seq(key)
                )
            )
        return runs, workflow

    def lock(self) -> None:
        """Hold the case until the transaction ends: two starts at once (two tabs, a double
        click) would otherwise both find nothing running."""
        if not ClinicalCase.objects.select_for_update().filter(pk=self.pk).values("pk"):
            raise CannotStart("This case was deleted.")

    def _first_seq(self, stage_key: str) -> int:
        """A new run of a stage counts on from every earlier run of it (and a group's from
        its last run): a page that reconnects to the stage's stream with an earlier run's
        last event id must not take the new run for what it already shows."""
        earlier = self.stage_runs.filter(stage_key=stage_key).aggregate(seq=Max("seq"))["seq"]
        return earlier + 1 if earlier is not None else 0

    @transaction.atomic
    def ask(self, question: str) -> tuple["ChatMessage", "ChatMessage"]:
        """The clinician's question and the queued reply, or CannotStart."""
        self.lock()
        if self.chat_messages.filter(status__in=ACTIVE).exists():
            raise CannotStart("Wait for the current reply to finish, or stop it.")
        asked = ChatMessage.objects.create(
            case=self, role=ChatMessage.Role.USER, content=question, status=Status.COMPLETE
        )
        reply = ChatMessage.objects.create(case=self, role=ChatMessage.Role.ASSISTANT)
        return asked, reply

    @transaction.atomic
    def continue_stage_run(self, stage_key: str) -> "StageRun":
        """A new run that carries on from the partial text of the stage's last run."""
        self.lock()
        last = self.stage_runs.filter(stage_key=stage_key).order_by("-queued_at", "-id").first()
        if last is None or not last.resumable:
            raise CannotStart("There is nothing to continue: run the stage.")
        return StageRun.objects.create(
            case=self, stage_key=stage_key, seq=self._first_seq(stage_key), continued_from=last,
            inputs=last.inputs,
            reasoning=last.reasoning, summary=last.summary, thinking=last.thinking,
        )  # fmt: skip

    @transaction.atomic
    def retry_reply(self, reply_id: int) -> "ChatMessage":
        """A new reply to the same conversation; the failed one stays, as it was."""
        self.lock()
        if self.chat_messages.filter(status__in=ACTIVE).exists():
            raise CannotStart("Wait for the current reply to finish, or stop it.")
        failed = self.chat_messages.get(pk=reply_id, role=ChatMessage.Role.ASSISTANT)
        if failed.status not in RESUMABLE:
            raise CannotStart("That reply is complete.")
        return ChatMessage.objects.create(case=self, role=ChatMessage.Role.ASSISTANT)

    def mark_stale_after(self, stage_key: str) -> int:
        """A stage is running again: the complete runs that used its old output are stale."""
        return self.stage_runs.filter(status=Status.COMPLETE, inputs__has_key=stage_key).update(
            status=Status.STALE, seq=F("seq") + 1
        )

    def mark_all_stale(self) -> int:
        """The case changed: every complete run reasoned about the old case."""
        return self.stage_runs.filter(status=Status.COMPLETE).update(
            status=Status.STALE, seq=F("seq") + 1
        )

    def stages_complete(self) -> int:
        return sum(run.status == Status.COMPLETE for run in self.latest_runs().values())

    def timeline(self) -> list["StageRun | ChatMessage"]:
        """The conversation in the ChatContainer: stage summaries and chat, in order."""
        runs = self.stage_runs.exclude(status=Status.CANCELLED, started_at=None)
        return sorted(
            chain(runs, self.chat_messages.all()), key=lambda item: (item.queued_at, item.pk)
        )

    def active_stream(self) -> "Streamable | None":
        """What the page should follow now: a running group, else the newest active run."""
        workflow = self.workflow_runs.filter(finished_at=None).order_by("-created_at").first()
        if workflow:
            return workflow
        runs = chain(
            self.stage_runs.filter(status__in=ACTIVE, workflow_run=None),
            self.chat_messages.filter(status__in=ACTIVE),
        )
        return max(runs, key=lambda item: item.queued_at, default=None)


class Streamable:
    """Anything with an event stream: a `seq` raised by each change, a channel-layer group."""

    stream_prefix: str

    @property
    def group_name(self) -> str:
        return f"{self.stream_prefix}.{self.pk}"


class Generation(Streamable, models.Model):
    """Text an LLM generates for the clinician: its status, timings and what went wrong."""

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
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

    class Meta:
        abstract = True

    @property
    def cancel_group(self) -> str:
        """Where a stop request is signalled to the process generating it."""
        return f"stop.{self.group_name}"

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

    async def aappend(self, texts: dict[str, str]) -> int:
        """Persist generated text (appended in SQL, never rewritten); returns the new seq."""
        changes = {name: Concat(F(name), Value(text)) for name, text in texts.items()}
        if self.first_token_at is None:
            self.first_token_at = timezone.now()
            changes["first_token_at"] = Value(self.first_token_at)
        await sync_to_async(self._update)(seq=F("seq") + 1, **changes)
        self.seq += 1
        for name, text in texts.items():
            setattr(self, name, getattr(self, name) + text)
        return self.seq

    def set_status(self, status: str, **fields) -> int:
        """Move to a new status (with any fields that go with it); returns the new seq."""
        self._update(seq=F("seq") + 1, status=status, **fields)
        self.seq += 1
        self.status = status
        for name, value in fields.items():
            setattr(self, name, value)
        return self.seq

    async def aset_status(self, status: str, **fields) -> int:
        return await sync_to_async(self.set_status)(status, **fields)

    async def acomplete(self, **fields) -> None:
        """It has generated its whole answer."""
        await self.aset_status(Status.COMPLETE, **fields)

    def _update(self, **changes) -> None:
        """Update the row while it is still being generated, else raise NoLongerActive."""
        if not type(self).objects.filter(pk=self.pk, status__in=ACTIVE).update(**changes):
            raise NoLongerActive(f"{type(self).__name__} {self.pk} is no longer being generated.")


class WorkflowRun(Streamable, models.Model):
    """A group of stages run in order by one request."""

    stream_prefix = "workflow-run"

    case = models.ForeignKey(ClinicalCase, on_delete=models.CASCADE, related_name="workflow_runs")
    group_key = models.CharField(
        max_length=20, choices=[(g.key, g.title) for g in RUNNABLE_GROUPS.values()]
    )
    seq = models.PositiveIntegerField(default=0, help_text="Raised when the group finishes.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_group_key_display()} for case {self.case_id}"

    @property
    def group(self):
        return RUNNABLE_GROUPS[self.group_key]

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def stream_seq(self) -> int:
        """The group stream's seq: its own plus its stage runs', as Postgres holds them now.

        Every change to the group or to one of its runs raises it, whoever makes it.
        """
        return WorkflowRun.objects.filter(pk=self.pk).aggregate(seq=_GROUP_SEQ)["seq"]

    async def astream_seq(self) -> int:
        return (await WorkflowRun.objects.filter(pk=self.pk).aaggregate(seq=_GROUP_SEQ))["seq"]

    def finish(self) -> bool:
        """Record that the group is over (once); False if it already was."""
        return bool(
            WorkflowRun.objects.filter(pk=self.pk, finished_at=None).update(
                seq=F("seq") + 1, finished_at=timezone.now()
            )
        )


_GROUP_SEQ = Max("seq") + Coalesce(Sum("stage_runs__seq"), 0)


class StageRun(Generation):
    """One run of one stage: the reasoning and summary it generated, and what it built on."""

    stream_prefix = "stage-run"
    Status = Status
    ACTIVE = ACTIVE

    case = models.ForeignKey(ClinicalCase, on_delete=models.CASCADE, related_name="stage_runs")
    workflow_run = models.ForeignKey(
        WorkflowRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="stage_runs"
    )
    stage_key = models.CharField(max_length=20, choices=[(s.key, s.title) for s in STAGES.values()])
    reasoning = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    inputs = models.JSONField(
        default=dict, blank=True, help_text="The earlier stage runs whose summaries it used."
    )
    continued_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="continuations",
        help_text="The run whose partial text this one carries on from.",
    )  # fmt: skip

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [models.Index(fields=["case", "stage_key", "-queued_at"])]
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
    def text_so_far(self) -> str:
        return self.reasoning + self.summary

    async def acomplete(self, **fields) -> None:
        """Complete, or stale when the case, or an earlier stage it built on, changed while it
        ran: it reasoned about what no longer holds."""
        await sync_to_async(self._complete)(**fields)

    @transaction.atomic
    def _complete(self, **fields) -> None:
        # Decided holding the case, as edits and starts do: neither slips in between.
        self.case.lock()
        self.set_status(Status.COMPLETE if self._still_current() else Status.STALE, **fields)

    def _still_current(self) -> bool:
        edited = ClinicalCase.objects.filter(pk=self.case_id, updated_at__gt=self.case.updated_at)
        latest = self.case.latest_runs()
        return not edited.exists() and all(
            key in latest and latest[key].pk == pk for key, pk in self.inputs.items()
        )

    def raw_output(self) -> str:
        """The text as the model wrote it, tags included, for asking it to carry on."""
        raw = f"<detailed>{self.reasoning}"
        if self.summary:
            raw += f"</detailed>\n<summary>{self.summary}"
        return raw


class ChatMessage(Generation):
    """A follow-up question in the ChatContainer, or the streamed reply to one."""

    stream_prefix = "chat-message"

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    case = models.ForeignKey(ClinicalCase, on_delete=models.CASCADE, related_name="chat_messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)

    class Meta:
        ordering = ["queued_at", "id"]
        indexes = [models.Index(fields=["case", "queued_at"])]
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
