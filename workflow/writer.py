"""Generated text on its way to Postgres: one writer per process.

Every generation this process streams hands its text to the writer and reads on. The
writer saves what all of them streamed since its last save in one statement per table,
one save at a time, then announces it (`Generation.append_all`): under load, saves carry
more text, not more statements.
"""

import asyncio
import weakref

from django.conf import settings

from streaming.batches import Batches
from workflow.models import Generation

# One per event loop: its saves run on that loop's async database pool.
_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Batches[Generation]] = (
    weakref.WeakKeyDictionary()
)


def writer() -> Batches[Generation]:
    loop = asyncio.get_running_loop()
    if loop not in _writers:
        _writers[loop] = Batches(Generation.append_all, settings.STREAM_FLUSH_INTERVAL)
    return _writers[loop]
