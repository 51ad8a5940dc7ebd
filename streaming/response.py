"""The SSE HTTP response."""

from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse

from streaming import sse

RECONNECT_MILLISECONDS = 1000  # Chromium waits about 3 s to reconnect without it


async def _with_retry(events: AsyncIterator[str]) -> AsyncIterator[str]:
    yield sse.retry(RECONNECT_MILLISECONDS)
    async for text in events:
        yield text


def sse_response(events: AsyncIterator[str]) -> StreamingHttpResponse:
    """Stream already encoded events; a disconnect cancels the iterator (cleanup in finally)."""
    response = StreamingHttpResponse(_with_retry(events), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
