"""psycopg's async connections, for the statements a generation makes while it runs.

Django's async ORM runs every query of a job on one sync thread, where each stream's
writes would queue behind every other's. The statements of a generation's life (start,
append a batch, renew the leases, read back a stop request, end) run here instead, on the
event loop; the ORM still writes them (`sql_of`, `update_sql_of`) where it can.
"""

import asyncio
import math
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.db.models.sql import UpdateQuery
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

type Params = tuple | list | dict

# One pool per event loop: a connection belongs to the loop that opened it.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = (
    weakref.WeakKeyDictionary()
)


# A connection broken while idle (a database restart) must not cost a save: one idle this
# long is checked before use. One in use a moment ago is not: that round trip would come
# before every save of a stream (profiled: as much CPU as the save's own statement).
CHECK_AFTER_IDLE_SECONDS = 1.0
_returned_at: weakref.WeakKeyDictionary[AsyncConnection, float] = weakref.WeakKeyDictionary()


async def _check_if_idle(connection: AsyncConnection) -> None:
    if time.monotonic() - _returned_at.get(connection, -math.inf) >= CHECK_AFTER_IDLE_SECONDS:
        await AsyncConnectionPool.check_connection(connection)


async def _returned(connection: AsyncConnection) -> None:
    _returned_at[connection] = time.monotonic()


def _connection_params() -> dict[str, Any]:
    """Django's own connection parameters, without its sync cursor and adapters."""
    params = connections["default"].get_connection_params()
    for sync_only in ("cursor_factory", "context"):
        params.pop(sync_only, None)
    return params


async def _pool() -> AsyncConnectionPool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = AsyncConnectionPool(
            kwargs={**_connection_params(), "autocommit": True},
            connection_class=AsyncConnection,
            check=_check_if_idle,
            reset=_returned,
            min_size=1,
            max_size=10,
            open=False,
        )
        await pool.open()
    return pool


@asynccontextmanager
async def transaction() -> AsyncIterator[AsyncConnection]:
    """A connection of the pool in a transaction, committed unless the block raises."""
    async with (await _pool()).connection() as connection, connection.transaction():
        yield connection


async def fetch_row(
    query: Any, params: Params = (), on: AsyncConnection | None = None
) -> tuple | None:
    """The first row the statement returns (None if no row), on connection `on` or one
    of the pool's."""
    rows = await fetch_all(query, params, on)
    return rows[0] if rows else None


async def fetch_all(
    query: Any, params: Params = (), on: AsyncConnection | None = None
) -> list[tuple]:
    if on is None:
        async with (await _pool()).connection() as connection:
            return await fetch_all(query, params, connection)
    cursor = await on.execute(query, params)
    return await cursor.fetchall() if cursor.description else []


async def value_of(queryset: QuerySet, on: AsyncConnection | None = None) -> Any:
    """The first value of the first row of a one-column queryset, read on the event loop."""
    row = await fetch_row(*sql_of(queryset), on)
    return row[0] if row else None


def sql_of(queryset: QuerySet) -> tuple[str, tuple]:
    """The SELECT the ORM would run for this queryset, with its parameters."""
    return queryset.query.sql_with_params()


def update_sql_of(queryset: QuerySet, values: dict, returning: str) -> tuple[str, tuple]:
    """The UPDATE `queryset.update(**values)` would run, with a RETURNING clause."""
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    compiler = query.get_compiler(queryset.db)
    compiler.pre_sql_setup()
    update, params = compiler.as_sql()
    return f"{update} RETURNING {returning}", params


async def close() -> None:
    """Close this event loop's connections (a test's loop, before it ends)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
