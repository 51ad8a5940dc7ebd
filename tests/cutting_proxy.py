"""A TCP proxy for tests that cuts event streams, as a flaky network or a proxy's timeout
would: the page behind it must reconnect and lose or repeat nothing."""

import asyncio
import threading
from urllib.parse import urlsplit

from tests.conftest import free_port


class CuttingProxy:
    """Forwards every request to `upstream`, one request per connection; the responses of
    the first event streams (paths ending in `/events`) are cut after `cuts[n]` bytes, one
    cut per stream in turn."""

    def __init__(self, upstream: str, cuts: list[int]) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port)
        self._cuts = list(cuts)
        self.cut = 0  # streams cut so far
        self.url = f"http://127.0.0.1:{free_port()}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> "CuttingProxy":
        self._thread.start()
        port = urlsplit(self.url).port
        serving = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", port), self._loop
        )
        self._server = serving.result(timeout=10)
        return self

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _handle(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter):
        try:
            head = await client.readuntil(b"\r\n\r\n")
            upstream, to_upstream = await asyncio.open_connection(*self._upstream)
        except (asyncio.IncompleteReadError, ConnectionError):
            to_client.close()
            return
        path = head.split(b" ", 2)[1].split(b"?")[0]
        cut_after = self._cuts.pop(0) if path.endswith(b"/events") and self._cuts else None
        to_upstream.write(_one_request_per_connection(head))
        await asyncio.gather(
            _pipe(client, to_upstream),
            self._pipe_response(upstream, to_client, cut_after),
            return_exceptions=True,
        )
        for writer in (to_client, to_upstream):
            writer.close()

    async def _pipe_response(self, upstream, to_client, cut_after: int | None) -> None:
        sent = 0
        while data := await upstream.read(65536):
            if cut_after is not None and sent + len(data) >= cut_after:
                to_client.write(data[: cut_after - sent])
                await to_client.drain()
                self.cut += 1
                to_client.transport.abort()
                return
            to_client.write(data)
            await to_client.drain()
            sent += len(data)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def _one_request_per_connection(head: bytes) -> bytes:
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines[:1], b"Connection: close", *lines[1:]])
