"""The event loop's connections to Postgres (`workflow/asyncdb.py`) survive the database
dropping them while they wait in the pool (a restart, a failover)."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from tests.conftest import run_async
from workflow import asyncdb

pytestmark = pytest.mark.django_db(transaction=True)

BACKEND = "SELECT pg_backend_pid()"


def _end_backend(pid: int) -> None:
    """What a database restart or an idle timeout does to one connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def _statements_after_a_drop(idle: float) -> tuple[int, set[int]]:
    """The backend dropped, and those that answered the statements run `idle` seconds
    after: more of them than the pool has connections, so the dropped one comes round."""

    async def drop_then_use() -> tuple[int, set[int]]:
        (dropped,) = await asyncdb.fetch_row(BACKEND)
        await sync_to_async(_end_backend)(dropped)
        await asyncio.sleep(idle)
        return dropped, {(await asyncdb.fetch_row(BACKEND))[0] for _ in range(12)}

    return run_async(drop_then_use())


@pytest.mark.parametrize(
    "idle",
    [asyncdb.CHECK_AFTER_IDLE_SECONDS, 0.0],
    ids=["after it sat idle", "a moment after it was used, as a stream's saves come"],
)
def test_a_connection_the_database_dropped_costs_no_statement(idle):
    dropped, answered_by = _statements_after_a_drop(idle)
    assert answered_by and dropped not in answered_by  # each answered, on another one
