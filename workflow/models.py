from django.conf import settings
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.urls import reverse
from django.utils import timezone

from workflow.stages import GROUPS, STAGES, Stage


class ClinicalCaseQuerySet(models.QuerySet):
    def visible_to(self, user) -> "ClinicalCaseQuerySet":
        """The cases a user may see: their own."""
        return self.filter(owner=user) if user.is_authenticated else self.none()


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
        names = [
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
        facts = []
        for name in names:
            value = getattr(self, name)
            if name == "sex":
                value = self.get_sex_display()
            if value not in (None, ""):
                facts.append((self._meta.get_field(name).verbose_name.capitalize(), str(value)))
        return facts

    def latest_runs(self) -> dict[str, "StageRun"]:
        """The most recent run of each stage that has one."""
        runs = self.stage_runs.order_by("stage_key", "-queued_at", "-id").distinct("stage_key")
        return {run.stage_key: run for run in runs}

    def earlier_summaries(self, stage: Stage) -> list[tuple[Stage, str]]:
        """The summaries of the completed stages that come before `stage`."""
        latest = self.latest_runs()
        keys = list(STAGES)
        return [
            (STAGES[key], latest[key].summary)
            for key in keys[: keys.index(stage.key)]
            if key in latest and latest[key].status == StageRun.Status.COMPLETE
        ]

    def missing_for(self, stage: Stage) -> list[Stage]:
        """The stages `stage` needs that have not completed."""
        latest = self.latest_runs()
        return [
            STAGES[key]
            for key in stage.needs
            if key not in latest or latest[key].status != StageRun.Status.COMPLETE
        ]


class WorkflowRun(models.Model):
    """A group of stages run in order by one request."""

    case = models.ForeignKey(ClinicalCase, on_delete=models.CASCADE, related_name="workflow_runs")
    group_key = models.CharField(max_length=20, choices=[(g.key, g.title) for g in GROUPS.values()])
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_group_key_display()} for case {self.case_id}"


class StageRun(models.Model):
    """One run of one stage: its status, the text it generated, and how it went."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETE = "complete"
        ERROR = "error"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"
        STALE = "stale"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    case = models.ForeignKey(ClinicalCase, on_delete=models.CASCADE, related_name="stage_runs")
    workflow_run = models.ForeignKey(
        WorkflowRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="stage_runs"
    )
    stage_key = models.CharField(max_length=20, choices=[(s.key, s.title) for s in STAGES.values()])
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    reasoning = models.TextField(blank=True)
    summary = models.TextField(blank=True)
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
    def stage(self):
        return STAGES.get(self.stage_key)

    @property
    def finished(self) -> bool:
        return self.status not in self.ACTIVE

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

    @property
    def group_name(self) -> str:
        """The channel-layer group its events are published to."""
        return f"stage-run.{self.pk}"

    async def aappend(self, texts: dict[str, str]) -> int:
        """Persist generated text (appended in SQL, never rewritten); returns the new seq."""
        changes = {name: Concat(F(name), Value(text)) for name, text in texts.items() if text}
        now = timezone.now()
        if self.first_token_at is None:
            self.first_token_at = now
            changes["first_token_at"] = Value(now)
        self.seq += 1
        await StageRun.objects.filter(pk=self.pk).aupdate(seq=F("seq") + 1, **changes)
        for name, text in texts.items():
            setattr(self, name, getattr(self, name) + text)
        return self.seq

    async def aset_status(self, status: str, **fields) -> int:
        """Move to a new status (with any fields that go with it); returns the new seq."""
        self.status = status
        self.seq += 1
        for name, value in fields.items():
            setattr(self, name, value)
        await StageRun.objects.filter(pk=self.pk).aupdate(seq=F("seq") + 1, status=status, **fields)
        return self.seq


class ChatMessage(models.Model):
    """A message in the ChatContainer; a stage's summary is an assistant message."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    case = models.ForeignKey(ClinicalCase, on_delete=models.CASCADE, related_name="chat_messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    stage_run = models.OneToOneField(
        StageRun, on_delete=models.CASCADE, null=True, blank=True, related_name="chat_message"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["case", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role} message in case {self.case_id}"

    @property
    def text(self) -> str:
        return self.stage_run.summary if self.stage_run_id else self.content
