"""psycopg's async connections, for the statements a generation makes while it streams.

Django's async ORM runs every query on its one sync thread, where each stream's writes
would queue behind every other's. The few statements made while text streams (append a
batch, renew the leases, read back a stop request) run here instead, on the event loop.
"""

import asyncio
import weakref
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

# One pool per event loop: a connection belongs to the loop that opened it.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = (
    weakref.WeakKeyDictionary()
)


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
            # A connection broken while idle (a database restart) must not cost a save.
            check=AsyncConnectionPool.check_connection,
            min_size=1,
            max_size=10,
            open=False,
        )
        await pool.open()
    return pool


async def fetch_row(query: Any, params: tuple | dict = ()) -> tuple | None:
    """The first row the statement returns (None if no row)."""
    async with (await _pool()).connection() as connection:
        cursor = await connection.execute(query, params)
        return await cursor.fetchone()


async def fetch_all(query: Any, params: tuple | dict = ()) -> list[tuple]:
    async with (await _pool()).connection() as connection:
        cursor = await connection.execute(query, params)
        return await cursor.fetchall()


async def value_of(queryset: QuerySet) -> Any:
    """The first value of the first row of a one-column queryset, read on the event loop."""
    row = await fetch_row(*queryset.query.sql_with_params())
    return row[0] if row else None


async def close() -> None:
    """Close this event loop's connections (a test's loop, before it ends)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
