"""Any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, llama.cpp server) via the openai SDK."""

from collections.abc import AsyncIterator

from openai import AsyncOpenAI, Timeout

from workflow.llm.base import Chunk, LLMRequest, Usage


class OpenAIEngine:
    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str,
        connect_timeout: float,
        read_timeout: float,
        max_tokens: int,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.label = f"{model} at {base_url or 'api.openai.com'}"
        self.client = AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",  # local servers accept any key
            timeout=Timeout(read_timeout, connect=connect_timeout),
            max_retries=0,  # the runner decides about retries
        )

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        chunks = await self.client.chat.completions.create(
            model=self.model,
            messages=request.messages,
            max_tokens=self.max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
        async with chunks:
            async for chunk in chunks:
                usage = None
                if chunk.usage:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                if not chunk.choices:
                    if usage:
                        yield Chunk(usage=usage)
                    continue
                delta = chunk.choices[0].delta
                yield Chunk(
                    content=delta.content or "",
                    # vLLM, llama.cpp and DeepSeek send a model's thinking in this extra field.
                    reasoning=getattr(delta, "reasoning_content", None) or "",
                    usage=usage,
                )

    async def complete(self, request: LLMRequest) -> str:
        response = await self.client.chat.completions.create(
            model=self.model, messages=request.messages, max_tokens=self.max_tokens
        )
        return response.choices[0].message.content or ""
