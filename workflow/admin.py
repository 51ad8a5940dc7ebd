from django.contrib import admin

from workflow.models import ChatMessage, ClinicalCase, StageRun, WorkflowRun

GENERATION_TIMES = ["queued_at", "started_at", "first_token_at", "finished_at"]


class StageRunInline(admin.TabularInline):
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


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "group_key", "created_at", "finished_at"]
    list_filter = ["group_key"]
    raw_id_fields = ["case"]
    inlines = [StageRunInline]


@admin.register(StageRun)
class StageRunAdmin(admin.ModelAdmin):
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
    raw_id_fields = ["case", "workflow_run"]
    readonly_fields = ["seq", *GENERATION_TIMES, "inputs"]


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "role", "status", "engine", "queued_at", "error_code"]
    list_filter = ["role", "status", "error_code"]
    search_fields = ["content"]
    raw_id_fields = ["case"]
    readonly_fields = ["seq", *GENERATION_TIMES]
