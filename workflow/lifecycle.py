"""A server process's own work: started by its first request, closed when it stops.

Daphne sends no ASGI lifespan events. The first request starts the lease sweeper and asks
Twisted's reactor, which Daphne runs, to close the process's connections (the provider
client, the async database pool) before it shuts down.
"""

import asyncio
import logging
import sys

from workflow import asyncdb, sweeper
from workflow.llm import close_shared_engine

logger = logging.getLogger(__name__)

_closing_registered = False


def ensure_started() -> None:
    global _closing_registered
    sweeper.ensure_running()
    if not _closing_registered and "twisted.internet.reactor" in sys.modules:
        from twisted.internet import defer, reactor

        def close():
            return defer.Deferred.fromFuture(asyncio.ensure_future(_close_connections()))

        reactor.addSystemEventTrigger("before", "shutdown", close)
        _closing_registered = True


async def _close_connections() -> None:
    await close_shared_engine()
    await asyncdb.close()
    logger.info("Closed the provider client and the database pool.")
