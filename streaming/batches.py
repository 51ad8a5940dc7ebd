"""Batches of streamed text from many streams, saved together while reading goes on.

Whoever reads a stream adds each routed piece under its stream's key and never waits for
a save. At most one save is in flight, for every key at once; the next takes everything
that arrived meanwhile, so under load batches grow instead of a backlog or the number of
saves, and the delay of a piece stays about one interval plus one save.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from contextvars import Context

type Texts = dict[str, str]
# Saves the texts of many keys at once; returns the keys whose save failed, and why.
type Save[K] = Callable[[dict[K, Texts]], Awaitable[dict[K, BaseException]]]


class Batches[K: Hashable]:
    def __init__(self, save: Save[K], interval: float) -> None:
        self._save = save
        self._interval = interval
        self._pending: dict[K, Texts] = {}
        self._in_flight: Iterable[K] = ()
        self._failures: dict[K, BaseException] = {}
        self._last_save = 0.0
        self._saving: asyncio.Task | None = None
        self._saved = asyncio.Event()  # set when a save ends, then replaced

    def add(self, key: K, pieces: list[tuple[str, str]]) -> None:
        """Gather pieces for the next save; raises what an earlier save of `key` raised."""
        if key in self._failures:
            raise self._failures[key]
        if not pieces:
            return
        texts = self._pending.setdefault(key, {})
        for channel, text in pieces:
            texts[channel] = texts.get(channel, "") + text
        self._keep_saving()

    async def close(self, key: K) -> None:
        """Wait until all that was added under `key` is saved (other keys may go on adding),
        then forget it; raises what its save raised. A caller cancelled meanwhile still
        waits, so that nothing it added is cut off, and is cancelled after."""
        cancelled = False
        while key in self._pending or key in self._in_flight:
            self._keep_saving()
            try:
                await self._saved.wait()
            except asyncio.CancelledError:
                cancelled = True
        failure = self._failures.pop(key, None)
        if cancelled:
            raise asyncio.CancelledError
        if failure is not None:
            raise failure

    def _keep_saving(self) -> None:
        if self._pending and (self._saving is None or self._saving.done()):
            # Saves for every stream: not in the context (the log ids) of whichever added first.
            loop = asyncio.get_running_loop()
            self._saving = loop.create_task(self._save_while_pending(), context=Context())

    async def _save_while_pending(self) -> None:
        while self._pending:
            await asyncio.sleep(max(0.0, self._last_save + self._interval - time.monotonic()))
            batch, self._pending = self._pending, {}
            self._in_flight, self._last_save = batch.keys(), time.monotonic()
            try:
                self._failures |= await self._save(batch)
            except Exception as exc:
                self._failures |= dict.fromkeys(batch, exc)
            finally:
                self._in_flight = ()
                saved, self._saved = self._saved, asyncio.Event()
                saved.set()
