"""Work a server process repeats on a schedule: one loop per event loop, started once."""

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Work = Callable[[], Awaitable[object]]

_tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Work, asyncio.Task]] = (
    weakref.WeakKeyDictionary()
)


def ensure(work: Work, seconds: float) -> None:
    """Do `work` now and every `seconds` after, on this event loop, unless it already is."""
    loop = asyncio.get_running_loop()
    tasks = _tasks.setdefault(loop, {})
    if work not in tasks:
        tasks[work] = loop.create_task(_repeat(work, seconds))


async def _repeat(work: Work, seconds: float) -> None:
    while True:
        try:
            await work()
        except Exception:
            logger.warning("%s failed; trying again.", work.__qualname__, exc_info=True)
        await asyncio.sleep(seconds)
