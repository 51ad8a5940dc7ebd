"""A server process's own work: started by its first request, closed when it stops.

Daphne sends no ASGI lifespan events. The first request starts the lease sweeper, clears
the metrics that dead processes of the host left behind, and asks
Twisted's reactor, which Daphne runs, to stop the runner's jobs (their generations end
interrupted, with their text saved) and then close the process's connections (the
provider client, the async database pool) before it shuts down.
"""

import asyncio
import logging
import sys

from workflow import asyncdb, metrics, runner, sweeper
from workflow.llm import close_shared_engine

logger = logging.getLogger(__name__)

STOP_JOBS_SECONDS = 5.0
_started = False


def ensure_started() -> None:
    global _started
    sweeper.ensure_running()
    if _started:
        return
    _started = True
    metrics.forget_dead_processes()
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import defer, reactor

        def close():
            return defer.Deferred.fromFuture(asyncio.ensure_future(_stop()))

        reactor.addSystemEventTrigger("before", "shutdown", close)


async def _stop() -> None:
    await runner.stop_all(seconds=STOP_JOBS_SECONDS)
    await close_shared_engine()
    await asyncdb.close()
    metrics.process_ended()
    logger.info("Closed the provider client and the database pool.")
