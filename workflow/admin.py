from django.contrib import admin

from workflow.models import AuditEvent, ChatMessage, ClinicalCase, SignOff, StageRun, WorkflowRun


class ReadOnly:
    """What the model generated, with its statuses and timings, is a record: staff may read
    it, never write or invent it. (Deleting follows Django's permissions: a case, or a
    clinician, goes with its runs.)"""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class StageRunInline(ReadOnly, admin.TabularInline):
    model = StageRun
    fields = ["stage_key", "status", "engine", "queued_at", "finished_at", "error_code"]
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(ClinicalCase)
class ClinicalCaseAdmin(admin.ModelAdmin):
    list_display = ["id", "chief_complaint", "age", "sex", "owner", "updated_at"]
    list_filter = ["sex", "created_at"]
    search_fields = ["chief_complaint", "owner__username"]
    date_hierarchy = "created_at"
    raw_id_fields = ["owner"]
    inlines = [StageRunInline]

    def get_readonly_fields(self, request, obj=None):
        # Handing a case, with what was generated for it, to another clinician is no edit.
        return ["owner"] if obj else []

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and form.has_changed():
            obj.mark_all_stale()  # as when its clinician edits it


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["id", "case", "group_key", "created_at", "finished_at"]
    list_filter = ["group_key"]
    inlines = [StageRunInline]


@admin.register(StageRun)
class StageRunAdmin(ReadOnly, admin.ModelAdmin):
    list_display = [
        "id",
        "case",
        "stage_key",
        "status",
        "engine",
        "queued_at",
        "time_to_first_token",
        "duration",
        "completion_tokens",
        "error_code",
    ]
    list_filter = ["status", "stage_key", "engine", "error_code"]
    search_fields = ["case__chief_complaint", "error_message"]
    date_hierarchy = "queued_at"


@admin.register(ChatMessage)
class ChatMessageAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["id", "case", "role", "status", "engine", "queued_at", "error_code"]
    list_filter = ["role", "status", "error_code"]
    search_fields = ["content"]


class AppendOnly(ReadOnly):
    """A record Postgres keeps append-only: no one may delete it here either."""

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(AppendOnly, admin.ModelAdmin):
    """The audit: who did what to which case, when and from where."""

    list_display = ["at", "user", "action", "detail", "case_id", "address"]
    list_select_related = ["user"]
    list_filter = ["action", "user", "at"]
    search_fields = ["=case_id"]  # a case: by its id, which outlives it
    search_help_text = "A case's id."
    date_hierarchy = "at"


@admin.register(SignOff)
class SignOffAdmin(AppendOnly, admin.ModelAdmin):
    """Clinicians' decisions on stages, with the text each decided on."""

    list_display = ["decided_at", "decided_by", "decision", "stage_run_id", "case_id"]
    list_select_related = ["decided_by"]
    list_filter = ["decision", "decided_by", "decided_at"]
    search_fields = ["=case_id"]
    search_help_text = "A case's id."
    date_hierarchy = "decided_at"
