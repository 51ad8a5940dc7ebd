"""An OpenAI-compatible LLM simulator, so the real `openai` engine can be tested over HTTP.

It streams a deterministic answer in the tag format at a set pace, and injects faults on
demand. Tests steer it through `POST /control` (JSON: `ttft`, `tps`, `words` and a
`faults` queue, one per coming request) and read the requests it got at `GET /control`.

Faults: `429` and `500` (before the first token), `drop@N` (the connection is cut after N
tokens), `stall@N` (silence after N tokens), `nosummary` (no summary part) and
`thinking` (the reasoning comes first in `reasoning_content`).
"""

import asyncio
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

WORDS = (
    "the",
    "patient",
    "presents",
    "with",
    "findings",
    "that",
    "support",
    "a",
    "focused",
    "assessment",
    "and",
    "the",
    "history",
    "suggests",
    "an",
    "acute",
    "process",
    "while",
    "the",
    "examination",
    "narrows",
    "the",
    "possibilities",
    "further",
)


@dataclass
class Config:
    ttft: float = 0.05
    tps: float = 200.0
    words: int = 60
    faults: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


class DroppedConnection(Exception):
    """Raised mid-response: the server closes the connection without finishing."""


def answer(messages: list[dict[str, str]], words: int, *, summary: bool = True) -> str:
    """The deterministic answer to a conversation."""
    prompt = messages[-1]["content"] if messages else ""
    digest = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    body = " ".join(WORDS[(digest + n) % len(WORDS)] for n in range(words))
    if "<detailed>" not in prompt:  # not a stage: a summarising call or a chat reply
        return body
    first_line = prompt.splitlines()[0][:80]
    text = f"<detailed>Simulated reasoning on {first_line}: {body}.</detailed>"
    if summary:
        text += f"\n<summary>Simulated summary {digest % 10000}: {body[:60]}.</summary>"
    return text


def tokens(text: str) -> list[str]:
    """Split into word-sized tokens that join back into the text; tags come split in two."""
    out = []
    for n, word in enumerate(text.split(" ")):
        piece = word if n == 0 else " " + word
        cut = len(piece) // 2
        out.extend(p for p in (piece[:cut], piece[cut:]) if p)
    return out


class Simulator:
    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        if path == "/control" and method == "POST":
            for key, value in json.loads(body or b"{}").items():
                setattr(self.config, key, value)
            return await _json(send, 200, {"ok": True})
        if path == "/control":
            return await _json(send, 200, asdict(self.config))
        if path.endswith("/chat/completions") and method == "POST":
            return await self._complete(json.loads(body), send)
        return await _json(send, 404, {"error": {"message": "not found"}})

    async def _complete(self, request: dict[str, Any], send) -> None:
        config = self.config
        config.requests.append(request)
        fault = config.faults.pop(0) if config.faults else ""
        await asyncio.sleep(config.ttft)
        if fault in ("429", "500"):
            headers = [(b"retry-after", b"1")] if fault == "429" else []
            message = "rate limited" if fault == "429" else "simulated server error"
            return await _json(send, int(fault), {"error": {"message": message}}, headers)
        text = answer(request["messages"], config.words, summary=fault != "nosummary")
        model = request.get("model", "simulator")
        if not request.get("stream"):
            return await _json(send, 200, _completion(model, text))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        kind, _, at = fault.partition("@")
        pieces = tokens(text)
        if kind == "thinking":
            pieces = [("reasoning_content", p) for p in tokens("Thinking it over first.")] + [
                ("content", p) for p in pieces
            ]
        else:
            pieces = [("content", p) for p in pieces]
        for n, (name, piece) in enumerate(pieces):
            if kind in ("drop", "stall") and n == int(at):
                if kind == "drop":
                    raise DroppedConnection
                await asyncio.Event().wait()
            await _chunk(send, model, {name: piece})
            await asyncio.sleep(1 / config.tps)
        await _chunk(send, model, {}, finish_reason="stop")
        usage = {
            "prompt_tokens": len(str(request["messages"])) // 4,
            "completion_tokens": len(pieces),
            "total_tokens": 0,
        }
        await _event(
            send,
            {
                "id": "sim",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": usage,
            },
        )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "sim",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": 0},
    }


async def _chunk(send, model: str, delta: dict[str, str], finish_reason: str | None = None):
    await _event(
        send,
        {
            "id": "sim",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        },
    )


async def _event(send, payload: dict[str, Any]) -> None:
    data = f"data: {json.dumps(payload)}\n\n".encode()
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _json(send, status: int, payload: dict[str, Any], headers=()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
