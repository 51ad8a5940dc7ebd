"""Who viewed, ran, stopped, edited and exported each case: when, and from which address
(`AuditEvent`). Ids and actions only, never case text or model output."""

from django.http import HttpRequest
from psycopg import sql

from workflow import asyncdb
from workflow.models import AuditEvent

Action = AuditEvent.Action


def _event(request: HttpRequest, user, case_id: int, action: str, detail: str) -> AuditEvent:
    address = request.META.get("REMOTE_ADDR") or None  # the client's, behind --proxy-headers
    return AuditEvent(user=user, case_id=case_id, action=action, detail=detail, address=address)


def record(request: HttpRequest, case_id: int, action: str, detail: str = "") -> None:
    _event(request, request.user, case_id, action, detail).save()


async def arecord(request: HttpRequest, case_id: int, action: str, detail: str = "") -> None:
    """On the event loop, through psycopg's async pool: a start's cost matters under load,
    and the async ORM would hop to Django's one sync thread."""
    event = _event(request, await request.auser(), case_id, action, detail)
    params = (event.at, event.user_id, case_id, action, detail, event.address)
    await asyncdb.fetch_all(_INSERT, params)


_INSERT = sql.SQL(
    "INSERT INTO {} (at, user_id, case_id, action, detail, address) VALUES (%s, %s, %s, %s, %s, %s)"
).format(sql.Identifier(AuditEvent._meta.db_table))


def activity(case_id: int, limit: int = 50) -> list[AuditEvent]:
    """The case's latest events, newest first."""
    events = AuditEvent.objects.filter(case_id=case_id).select_related("user")
    return list(events.order_by("-at", "-pk")[:limit])
