"""Batches of streamed text, saved one at a time while reading goes on.

Whoever reads a stream adds each routed piece here and never waits for a save. At most
one save is in flight; the next takes everything that arrived meanwhile, so under load
batches grow instead of a backlog, and the delay of a piece stays about one interval
plus one save.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable

Save = Callable[[dict[str, str]], Awaitable[None]]


class Batches:
    def __init__(self, save: Save, interval: float) -> None:
        self._save = save
        self._interval = interval
        self._pending: dict[str, str] = {}
        self._last_save = 0.0
        self._saving: asyncio.Task | None = None

    def add(self, pieces: list[tuple[str, str]]) -> None:
        """Gather pieces for the next save; raises what a save in the background raised."""
        if self._failed():
            raise self._saving.exception()
        for channel, text in pieces:
            self._pending[channel] = self._pending.get(channel, "") + text
        if self._pending and (self._saving is None or self._saving.done()):
            self._saving = asyncio.ensure_future(self._save_while_pending())

    async def close(self) -> None:
        """Wait until all that was added is saved; raises what a save raised."""
        if self._saving is not None:
            await asyncio.shield(self._saving)  # a cancelled caller must not cut a save

    def _failed(self) -> bool:
        saving = self._saving
        return (
            saving is not None
            and saving.done()
            and not saving.cancelled()
            and bool(saving.exception())
        )

    async def _save_while_pending(self) -> None:
        while self._pending:
            await asyncio.sleep(max(0.0, self._last_save + self._interval - time.monotonic()))
            await self._save(self._take())

    def _take(self) -> dict[str, str]:
        texts, self._pending = self._pending, {}
        self._last_save = time.monotonic()
        return texts
