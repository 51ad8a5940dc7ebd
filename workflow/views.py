import hmac
import ipaddress

import psycopg
import waffle
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from prometheus_client import CONTENT_TYPE_LATEST

from streaming.response import sse_response
from workflow import audit, events, exports, fragments, metrics, runner, signoffs, workspace
from workflow import operations as ops
from workflow.audit import Action
from workflow.forms import ChatForm, ClinicalCaseForm, SignOffForm
from workflow.models import (
    CannotStart,
    ChatMessage,
    ClinicalCase,
    Generation,
    Mode,
    PhiChoice,
    StageRun,
    WorkflowRun,
)
from workflow.stages import RUNNABLE_GROUPS, STAGES

HEALTHZ_SECONDS = 3


def get_case_for_user(request, case_id: int) -> ClinicalCase:
    """The case if this user may see it, else 404 (never 403: it does not exist for them)."""
    return get_object_or_404(ClinicalCase.objects.visible_to(request.user), pk=case_id)


async def aget_case_for_user(request, case_id: int) -> ClinicalCase:
    user = await request.auser()
    try:
        return await ClinicalCase.objects.visible_to(user).aget(pk=case_id)
    except ClinicalCase.DoesNotExist:
        raise Http404("No such case.") from None


@login_required
@require_GET
def case_list(request):
    cases = ClinicalCase.objects.visible_to(request.user).with_last_activity().with_progress()
    return render(request, "workflow/case_list.html", {"cases": cases, "stage_count": len(STAGES)})


@login_required
@require_http_methods(["GET", "POST"])
def case_new(request):
    form = ClinicalCaseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        case = form.save(commit=False)
        case.owner = request.user
        case.phi_choice = form.phi_choice
        case.save()
        audit.record(request, case.pk, Action.EDITED, "created")
        _record_identifiers(request, case.pk, "case", form.phi_choice)
        return redirect(case)
    return render(request, "workflow/case_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def case_edit(request, case_id: int):
    case = get_case_for_user(request, case_id)
    form = ClinicalCaseForm(request.POST or None, instance=case)
    if request.method == "POST" and form.is_valid():
        chose = form.phi_choice != case.phi_choice
        case.phi_choice = form.phi_choice
        if form.has_changed():
            form.save()
            audit.record(request, case.pk, Action.EDITED, ",".join(form.changed_data)[:40])
            if case.mark_all_stale():
                messages.info(request, "The case changed: the stages run before are now stale.")
        elif chose:
            case.save(update_fields=["phi_choice"])
        _record_identifiers(request, case.pk, "case", form.phi_choice)
        return redirect(case)
    return render(request, "workflow/case_form.html", {"form": form, "case": case})


def _record_identifiers(request, case_id: int, what: str, choice: str) -> None:
    """Into the audit: what the clinician chose for the identifiers found, if any."""
    if choice:
        audit.record(request, case_id, Action.IDENTIFIERS, f"{what}: {PhiChoice(choice).label}")


@login_required
@require_GET
def workspace_page(request, case_id: int):
    case = get_case_for_user(request, case_id)
    if request.headers.get("X-Fallback") == "polling":  # the page's first poll
        metrics.FALLBACKS.labels("polling").inc()
    if not request.htmx and "X-Page-Refresh" not in request.headers:  # a view, not a poll
        audit.record(request, case.pk, Action.VIEWED)
    context = workspace.page(case, request.GET.get("stage"))
    context |= {"form": ChatForm(), "activity": audit.activity(case.pk)}
    return render(request, "workflow/workspace.html", context)


@login_required
@require_GET
def export_note(request, case_id: int):
    case = get_case_for_user(request, case_id)
    text = exports.note_text(exports.Report.of(case))
    if text is None:
        raise Http404("The note has no text yet.")
    audit.record(request, case.pk, Action.EXPORTED, "note.txt")
    return HttpResponse(text, content_type="text/plain; charset=utf-8")


@login_required
@require_GET
def export_report(request, case_id: int):
    case = get_case_for_user(request, case_id)
    audit.record(request, case.pk, Action.EXPORTED, "report.md")
    return HttpResponse(
        exports.report_markdown(exports.Report.of(case)),
        content_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="case-{case.pk}-report.md"'},
    )


@login_required
@require_GET
def print_report(request, case_id: int):
    case = get_case_for_user(request, case_id)
    audit.record(request, case.pk, Action.EXPORTED, "print")
    report = exports.Report.of(case)
    return render(
        request, "workflow/print.html", {"report": report, "disclaimer": exports.DISCLAIMER}
    )


@login_required
@require_http_methods(["GET", "POST"])
def signoff(request, case_id: int, stage_key: str):
    """A clinician's decision on a stage's latest run (POST: accept, edit or reject); GET
    is the page where they edit its text."""
    case = get_case_for_user(request, case_id)
    run = case.latest_runs().get(stage_key)
    if run is None:
        raise Http404("This stage has not been run.")
    form = SignOffForm(request.POST or None, initial=_as_it_stands(run))
    refusal = not_editable = signoffs.why_not(case, run, signoffs.Decision.EDITED)
    if request.method == "POST" and form.is_valid():
        try:
            decision = signoffs.decide(case, stage_key, request.user, **form.decided)
        except signoffs.CannotSignOff as cannot:
            refusal = str(cannot)
        else:
            audit.record(request, case.pk, Action.SIGNED_OFF, f"{stage_key}: {decision.decision}")
            _record_identifiers(request, case.pk, "edit", form.phi_choice)
            if request.htmx:
                return HttpResponse(fragments.decided(request, case, stage_key))
            return redirect(f"{case.get_absolute_url()}?stage={stage_key}")
    if request.method == "POST" and request.htmx:  # Accept or Reject from the workspace
        notice = refusal or " ".join(e for errors in form.errors.values() for e in errors)
        return HttpResponse(fragments.refused(request, notice))
    context = {"case": case, "run": run, "stage": run.stage, "form": form, "refusal": refusal}
    context["editable"] = not_editable is None
    status = 400 if request.method == "POST" else 200  # the form again after a POST: refused
    return render(request, "workflow/signoff.html", context, status=status)


def _as_it_stands(run: StageRun) -> dict:
    texts = {"summary": run.summary_in_use, "reasoning": run.reasoning_in_use}
    return {"decision": "edit", "run": run.pk, **texts}


@login_required
@require_POST
async def run_stage(request, case_id: int, stage_key: str):
    case = await aget_case_for_user(request, case_id)
    if stage_key not in STAGES:
        raise Http404("No such stage.")
    return await _start_runs(request, case, (stage_key,), None)


@login_required
@require_POST
async def run_group(request, case_id: int, group_key: str):
    case = await aget_case_for_user(request, case_id)
    if group_key not in RUNNABLE_GROUPS:
        raise Http404("No such group.")
    return await _start_runs(request, case, RUNNABLE_GROUPS[group_key].stage_keys, group_key)


async def _mode(request) -> str:
    """Streamed, unless the `streaming` flag is off for this clinician (then batch)."""
    streaming = await sync_to_async(waffle.flag_is_active)(request, "streaming")
    return Mode.STREAM if streaming else Mode.BATCH


async def _start_runs(request, case: ClinicalCase, stage_keys, group_key):
    try:
        runs, workflow = await runner.start_stages(
            case, stage_keys, group_key, await _mode(request)
        )
    except CannotStart as refusal:
        return await _refuse(request, case, str(refusal))
    await audit.arecord(request, case.pk, Action.RAN, group_key or ",".join(stage_keys))
    return await _started(request, case, workflow or runs[0], runs)


async def _started(request, case, followed, runs):
    if not request.htmx:
        return redirect(case)
    return HttpResponse(await sync_to_async(fragments.started)(request, followed, runs))


@login_required
@require_POST
async def continue_stage(request, case_id: int, stage_key: str):
    case = await aget_case_for_user(request, case_id)
    if stage_key not in STAGES:
        raise Http404("No such stage.")
    try:
        run = await runner.continue_stage(case, stage_key, await _mode(request))
    except CannotStart as refusal:
        return await _refuse(request, case, str(refusal))
    await audit.arecord(request, case.pk, Action.RAN, f"{stage_key} (continued)")
    return await _started(request, case, run, [run])


@login_required
@require_POST
async def cancel_stage(request, case_id: int, stage_key: str):
    case = await aget_case_for_user(request, case_id)
    generations = case.stage_runs.active().of_stage(stage_key)
    return await _stop(request, case, generations, stage_key)


@login_required
@require_POST
async def cancel_group(request, case_id: int, group_key: str):
    case = await aget_case_for_user(request, case_id)
    generations = case.stage_runs.active().filter(workflow_run__group_key=group_key)
    return await _stop(request, case, generations, group_key)


@login_required
@require_POST
async def cancel_reply(request, case_id: int, message_id: int):
    case = await aget_case_for_user(request, case_id)
    generations = case.chat_messages.active().filter(pk=message_id)
    return await _stop(request, case, generations, "reply")


async def _stop(request, case: ClinicalCase, generations: QuerySet[Generation], what: str):
    """Stop them; the page sees it happen on the stream it follows."""
    async for generation in generations:
        await generation.stop()
    await audit.arecord(request, case.pk, Action.STOPPED, what)
    if request.htmx:
        return HttpResponse(status=204)
    return redirect(case)


async def _refuse(request, case: ClinicalCase, notice: str):
    if request.htmx:
        return HttpResponse(fragments.refused(request, notice))
    await sync_to_async(messages.warning)(request, notice)
    return redirect(case)


@login_required
@require_POST
async def chat(request, case_id: int):
    case = await aget_case_for_user(request, case_id)
    form = ChatForm(request.POST)
    if not form.is_valid():
        if form.asks_about_identifiers and request.htmx:
            return HttpResponse(fragments.ask_about_identifiers(request, form))
        return await _refuse(request, case, " ".join(e for es in form.errors.values() for e in es))
    try:
        asked, reply = await sync_to_async(case.ask)(
            form.cleaned_data["message"], await _mode(request), form.phi_choice
        )
    except CannotStart as refusal:
        return await _refuse(request, case, str(refusal))
    runner.start_chat_reply(reply)
    await audit.arecord(request, case.pk, Action.RAN, "reply")
    await sync_to_async(_record_identifiers)(request, case.pk, "question", form.phi_choice)
    return _replying(request, case, [asked, reply])


@login_required
@require_POST
async def retry_reply(request, case_id: int, message_id: int):
    case = await aget_case_for_user(request, case_id)
    try:
        reply = await sync_to_async(case.retry_reply)(message_id, await _mode(request))
    except ChatMessage.DoesNotExist:
        raise Http404("No such reply.") from None
    except CannotStart as refusal:
        return await _refuse(request, case, str(refusal))
    runner.start_chat_reply(reply)
    await audit.arecord(request, case.pk, Action.RAN, "reply (retried)")
    return _replying(request, case, [reply])


def _replying(request, case: ClinicalCase, new_messages):
    if not request.htmx:
        return redirect(case)
    return HttpResponse(fragments.replying(request, case, new_messages))


@login_required
@require_GET
async def stage_events(request, case_id: int, stage_key: str):
    cases = ClinicalCase.objects.visible_to(await request.auser())
    run = await StageRun.objects.filter(case__in=cases, case=case_id).of_stage(stage_key).afirst()
    if run is None:  # no such case for this user, or never run
        raise Http404("This stage has not been run.")
    return _event_stream(request, run, fragments.stage_run_snapshot)


@login_required
@require_GET
async def group_events(request, case_id: int, group_key: str):
    case = await aget_case_for_user(request, case_id)
    workflow = await WorkflowRun.objects.filter(case=case, group_key=group_key).afirst()
    if workflow is None:
        raise Http404("This group has not been run.")
    return _event_stream(request, workflow, fragments.workflow_run_snapshot)


@login_required
@require_GET
async def chat_events(request, case_id: int, message_id: int):
    case = await aget_case_for_user(request, case_id)
    replies = ChatMessage.objects.filter(case=case, role=ChatMessage.Role.ASSISTANT)
    try:
        reply = await replies.aget(pk=message_id)
    except ChatMessage.DoesNotExist:
        raise Http404("No such reply.") from None
    return _event_stream(request, reply, fragments.chat_reply_snapshot)


def _event_stream(request, followed, load):
    try:
        last_event_id = int(request.headers.get("Last-Event-ID", ""))
        metrics.STREAM_RESUMES.inc()
    except ValueError:
        last_event_id = None
    return sse_response(events.events(request, followed, load, last_event_id))


@login_required
@require_GET
def operations(request):
    """Staff only: how the service has run (a clinician finds nothing here)."""
    if not request.user.is_staff:
        raise Http404("Not found.")
    return render(request, "workflow/operations.html", {"overview": ops.overview()})


@csrf_exempt  # a 404 for anything but the operator's GET, a POST included
def prometheus_metrics(request):
    """For the operator's Prometheus only; anyone else finds nothing here."""
    if request.method not in ("GET", "HEAD") or not _may_read_metrics(request):
        raise Http404("Not found.")
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


def _may_read_metrics(request) -> bool:
    """With METRICS_TOKEN set, whoever sends it as a bearer token; unset, a direct loopback
    request (one that came through a proxy carries X-Forwarded-For, even on this host)."""
    if settings.METRICS_TOKEN:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        token_matches = hmac.compare_digest(sent.encode(), settings.METRICS_TOKEN.encode())
        return scheme.lower() == "bearer" and token_matches
    if "X-Forwarded-For" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_GET
def healthz(request):
    """`ok` while the database answers; 503 when it does not (within seconds, where a
    request would wait for the pool longer), so a load balancer takes this process out
    of rotation."""
    pool = connection.pool
    try:
        pool.open()  # a process's first database access may be this one
        with pool.connection(timeout=HEALTHZ_SECONDS) as database:
            database.execute("SELECT 1")
    except psycopg.Error:
        return HttpResponse("database unavailable", status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")
