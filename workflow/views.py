from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, connection
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streaming.response import sse_response
from workflow import runner
from workflow.events import stage_run_events
from workflow.forms import ClinicalCaseForm
from workflow.models import ChatMessage, ClinicalCase, StageRun
from workflow.stages import GROUPS, STAGES


def get_case_for_user(request, case_id: int) -> ClinicalCase:
    """The case if this user may see it, else 404 (never 403: it does not exist for them)."""
    return get_object_or_404(ClinicalCase.objects.visible_to(request.user), pk=case_id)


async def aget_case_for_user(request, case_id: int) -> ClinicalCase:
    user = await request.auser()
    try:
        return await ClinicalCase.objects.visible_to(user).aget(pk=case_id)
    except ClinicalCase.DoesNotExist:
        raise Http404("No such case.") from None


def _stage_or_404(stage_key: str):
    if stage_key not in STAGES:
        raise Http404("No such stage.")
    return STAGES[stage_key]


@login_required
@require_GET
def case_list(request):
    cases = ClinicalCase.objects.visible_to(request.user)
    return render(request, "workflow/case_list.html", {"cases": cases})


@login_required
@require_http_methods(["GET", "POST"])
def case_new(request):
    form = ClinicalCaseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        case = form.save(commit=False)
        case.owner = request.user
        case.save()
        return redirect(case)
    return render(request, "workflow/case_form.html", {"form": form})


@login_required
@require_GET
def workspace(request, case_id: int):
    case = get_case_for_user(request, case_id)
    latest = case.latest_runs()
    active = [run for run in latest.values() if not run.finished]
    return render(
        request,
        "workflow/workspace.html",
        {
            "case": case,
            "groups": [
                (group, [(STAGES[key], latest.get(key)) for key in group.stage_keys])
                for group in GROUPS.values()
            ],
            "chat": case.chat_messages.select_related("stage_run"),
            "streaming_run": max(active, key=lambda run: run.queued_at, default=None),
        },
    )


@login_required
@require_POST
async def run_stage(request, case_id: int, stage_key: str):
    case = await aget_case_for_user(request, case_id)
    stage = _stage_or_404(stage_key)
    missing = await sync_to_async(case.missing_for)(stage)
    if missing:
        notice = f"Run {' and '.join(s.title for s in missing)} first: {stage.title} builds on it."
        if request.htmx:
            return render(request, "workflow/workspace.html#notice", {"notice": notice})
        messages.warning(request, notice)
        return redirect(case)
    run, new = await _start_stage_run(case, stage_key)
    if not request.htmx:
        return redirect(case)
    return render(
        request,
        "workflow/workspace.html#stream-start",
        {
            "run": run,
            "stage": stage,
            "case_id": case.pk,
            "streaming_run": run,
            "oob": True,
            "new": new,
        },
    )


async def _start_stage_run(case: ClinicalCase, stage_key: str) -> tuple[StageRun, bool]:
    """A new queued run handed to the runner (True), or the run already in progress."""
    try:
        run = await StageRun.objects.acreate(case=case, stage_key=stage_key)
    except IntegrityError:  # one active run per stage: follow the one that is running
        active = StageRun.objects.filter(status__in=StageRun.ACTIVE)
        return await active.aget(case=case, stage_key=stage_key), False
    await ChatMessage.objects.acreate(case=case, role=ChatMessage.Role.ASSISTANT, stage_run=run)
    runner.start(run)
    return run, True


@login_required
@require_GET
async def stage_events(request, case_id: int, stage_key: str):
    case = await aget_case_for_user(request, case_id)
    _stage_or_404(stage_key)
    run = await case.stage_runs.filter(stage_key=stage_key).order_by("-queued_at", "-id").afirst()
    if run is None:
        raise Http404("This stage has not been run.")
    return sse_response(stage_run_events(request, run, _last_event_id(request)))


def _last_event_id(request) -> int | None:
    try:
        return int(request.headers.get("Last-Event-ID", ""))
    except ValueError:
        return None


@require_GET
def metrics(request):
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


@require_GET
def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")
