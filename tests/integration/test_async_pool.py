"""The event loop's connections to Postgres (`workflow/asyncdb.py`) survive the database
dropping them while they wait in the pool."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from tests.conftest import run_async
from workflow import asyncdb

pytestmark = pytest.mark.django_db(transaction=True)


def _end_backend(pid: int) -> None:
    """What a database restart or an idle timeout does to one connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def test_a_connection_dropped_while_idle_costs_no_statement():
    async def drop_then_use() -> set[int]:
        dropped = (await asyncdb.fetch_row("SELECT pg_backend_pid()"))[0]
        await sync_to_async(_end_backend)(dropped)
        await asyncio.sleep(asyncdb.CHECK_AFTER_IDLE_SECONDS)
        # More statements than the pool has connections: the dropped one comes round.
        return {(await asyncdb.fetch_row("SELECT pg_backend_pid()"))[0] for _ in range(12)}

    used = run_async(drop_then_use())
    assert used  # each statement answered
