"""The bare relay the performance benchmark measures the product against.

One Django async view under the same Daphne, relaying the `openai` SDK's stream as SSE:
no database, no channel layer, no rendering. The benchmark's server serves it beside the
app (`tests.load.bench_settings`); the app itself never does.
"""

from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import include, path
from openai import AsyncOpenAI

from streaming import sse

_client: AsyncOpenAI | None = None


def _openai() -> AsyncOpenAI:
    global _client
    if _client is None:  # one per process, as a relay should
        _client = AsyncOpenAI(base_url=settings.LLM_BASE_URL, api_key=settings.LLM_API_KEY)
    return _client


async def relay(request):
    async def events():
        yield sse.retry(1000)
        stream = await _openai().chat.completions.create(
            model=settings.LLM_MODEL,
            messages=[{"role": "user", "content": "Relay a stamped answer."}],
            stream=True,
        )
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield sse.encode(chunk.choices[0].delta.content, event="delta")
        yield sse.encode("", event="done")

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [path("bench/relay", relay), path("", include("medhastra.urls"))]
