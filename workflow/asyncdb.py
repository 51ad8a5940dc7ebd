"""psycopg's async connections, for the statements a generation makes while it runs.

Django's async ORM runs every query of a job on one sync thread, where each stream's
writes would queue behind every other's. The statements of a generation's life (start,
append a batch, renew the leases, read back a stop request, end) run here instead, on the
event loop. The ORM writes their conditional UPDATEs (`update_sql_of`); the reads and the
batched appends that every stream repeats are written out once each.
"""

import asyncio
import math
import select
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


# A connection the database dropped (a restart, a failover) must not cost a save. One
# that sat idle a while is checked with a round trip before use; one in use a moment ago
# only if its socket has something to read (the database's goodbye): a round trip before
# every save of every stream would cost as much CPU as the save itself (profiled).
CHECK_AFTER_IDLE_SECONDS = 1.0
_last_used: weakref.WeakKeyDictionary[AsyncConnection, float] = weakref.WeakKeyDictionary()


async def _check_if_idle_or_dropped(connection: AsyncConnection) -> None:
    idle = time.monotonic() - _last_used.get(connection, -math.inf)
    said_something, _, _ = select.select([connection.pgconn.socket], [], [], 0)
    if idle >= CHECK_AFTER_IDLE_SECONDS or said_something:
        await AsyncConnectionPool.check_connection(connection)


@asynccontextmanager
async def _connection() -> AsyncIterator[AsyncConnection]:
    async with (await _pool()).connection() as connection:
        try:
            yield connection
        finally:
            _last_used[connection] = time.monotonic()


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
            check=_check_if_idle_or_dropped,
            min_size=1,
            max_size=10,
            open=False,
        )
        await pool.open()
    return pool


@asynccontextmanager
async def transaction() -> AsyncIterator[AsyncConnection]:
    """A connection of the pool in a transaction, committed unless the block raises."""
    async with _connection() as connection, connection.transaction():
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
        async with _connection() as connection:
            return await fetch_all(query, params, connection)
    cursor = await on.execute(query, params)
    return await cursor.fetchall() if cursor.description else []


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
