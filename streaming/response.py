"""The SSE HTTP response."""

from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse
from prometheus_client import Gauge

from streaming import sse

RECONNECT_MILLISECONDS = 1000  # Chromium waits about 3 s to reconnect without it

OPEN_STREAMS = Gauge(
    "medhastra_open_event_streams", "Event streams currently open.", multiprocess_mode="livesum"
)


async def _with_retry_first(events: AsyncIterator[str]) -> AsyncIterator[str]:
    OPEN_STREAMS.inc()
    try:
        yield sse.retry(RECONNECT_MILLISECONDS)
        async for text in events:
            yield text
    finally:  # also on a disconnect, which arrives as CancelledError
        OPEN_STREAMS.dec()


def sse_response(events: AsyncIterator[str]) -> StreamingHttpResponse:
    """Stream already encoded events; a disconnect cancels the iterator (cleanup in finally)."""
    response = StreamingHttpResponse(_with_retry_first(events), content_type="text/event-stream")
    response["Cache-Control"] = "no-store"  # a patient's record: never kept by a cache
    response["X-Accel-Buffering"] = "no"
    return response
