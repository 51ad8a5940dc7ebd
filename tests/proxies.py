"""TCP proxies for tests, each on its own event loop thread: one cuts a page's event
streams, as a flaky network or a proxy's timeout would; one is a database link that can
go down."""

import asyncio
import threading
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from tests.conftest import free_port

type Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class _Proxy:
    """Forwards connections on a free port of 127.0.0.1 to what `connect` opens."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._open: set[asyncio.StreamWriter] = set()  # both ends of each connection

    def __enter__(self):
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        return self

    def __exit__(self, *exc) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _run(self, work: Awaitable):
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    async def _stop(self) -> None:
        self._server.close()
        self._cut_all()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    def _cut_all(self) -> None:
        for writer in self._open:
            writer.transport.abort()

    async def _handle(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter):
        try:
            head = await self._head(client)
            upstream, to_upstream = await self._connect()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            to_client.transport.abort()
            return
        self._open |= {to_client, to_upstream}
        to_upstream.write(head)
        try:
            await asyncio.gather(
                _pipe(client, to_upstream),
                self._pipe_back(upstream, to_client, head),
                return_exceptions=True,
            )
        finally:
            for writer in (to_client, to_upstream):
                writer.close()
            self._open -= {to_client, to_upstream}

    async def _head(self, client: asyncio.StreamReader) -> bytes:
        """What the proxy reads before it connects upstream."""
        return b""

    async def _pipe_back(self, upstream, to_client, head: bytes) -> None:
        await _pipe(upstream, to_client)


class CuttingProxy(_Proxy):
    """An HTTP proxy in front of the `upstream` URL, one request per connection; the
    responses of the first event streams (paths ending in `/events`) are cut after
    `cuts[n]` bytes, one cut per stream in turn."""

    def __init__(self, upstream: str, cuts: list[int]) -> None:
        address = urlsplit(upstream)
        super().__init__(lambda: asyncio.open_connection(address.hostname, address.port))
        self._cuts = list(cuts)
        self.cut = 0  # streams cut so far
        self.url = f"http://127.0.0.1:{self.port}"

    async def _head(self, client: asyncio.StreamReader) -> bytes:
        lines = (await client.readuntil(b"\r\n\r\n")).split(b"\r\n")
        lines = [line for line in lines if not line.lower().startswith(b"connection:")]
        return b"\r\n".join([lines[0], b"Connection: close", *lines[1:]])

    async def _pipe_back(self, upstream, to_client, head: bytes) -> None:
        path = head.split(b" ", 2)[1].split(b"?")[0]
        if not (path.endswith(b"/events") and self._cuts):
            return await _pipe(upstream, to_client)
        cut_after, sent = self._cuts.pop(0), 0
        while data := await upstream.read(65536):
            if sent + len(data) >= cut_after:
                to_client.write(data[: cut_after - sent])
                await to_client.drain()
                self.cut += 1
                to_client.transport.abort()
                return
            to_client.write(data)
            await to_client.drain()
            sent += len(data)


class DatabaseLink(_Proxy):
    """A link to PostgreSQL (at a host and port, or a Unix socket directory) that can go
    down: every connection through it is cut and new ones are refused until it is up."""

    def __init__(self, host: str, port: int) -> None:
        if host.startswith("/"):
            connect = lambda: asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")  # noqa: E731
        else:
            connect = lambda: asyncio.open_connection(host, port)  # noqa: E731
        super().__init__(connect)
        self.down = False

    def go_down(self) -> None:
        self._run(self._go_down())

    def come_up(self) -> None:
        self.down = False

    async def _go_down(self) -> None:
        self.down = True
        self._cut_all()

    async def _handle(self, client, to_client) -> None:
        if self.down:
            to_client.transport.abort()
            return
        await super()._handle(client, to_client)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
