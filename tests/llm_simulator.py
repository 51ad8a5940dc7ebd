"""An OpenAI-compatible LLM simulator, so the real `openai` engine can be tested over HTTP.

Dev and test tooling, not part of the app: `make simulator` serves it on port 8001
(`python -m tests.llm_simulator --help`); the test suite starts its own.

`POST /v1/chat/completions` streams (or, without `stream`, returns) a deterministic answer
in the tag format at a set pace, and injects faults on demand. Like a real provider, it
stops a streamed answer at the request's `max_tokens` (`finish_reason` "length").

Control API (JSON), which the tests use:
- `GET /control`: its settings and every request it received (`requests`), each with
  what it wrote back (`written`: the text of each delta field it sent before any cut;
  `complete`: whether the answer was whole; `fault`: the fault it drew).
- `POST /control`: change settings (known keys only; anything else is a 400), e.g.
  `{"ttft": 0.3, "tps": 30, "words": 300}`:
  - `ttft` seconds to the first token, `tps` tokens per second, `words` per answer;
  - `faults`: a queue, one per coming request: `400`, `401`, `429`, `500` (an HTTP error;
    the 400 quotes the prompt back), `drop@N` (the connection is cut after N tokens),
    `stall@N` (silence after N tokens),
    `nosummary` (no summary part), `nocantmiss` (no can't-miss part, where one is asked
    for), `thinking` (reasoning first, in `reasoning_content`),
    `links` (a prompt-injected answer: links, an image and raw HTML pointing elsewhere),
    `nostream` (a 400 that refuses `stream`, to a streaming request);
  - `fault_rates`: faults drawn at random for requests the queue does not cover, e.g.
    `{"429": 0.1, "drop": 0.1}` (`drop` and `stall` without `@N` fall before the first
    token one time in four, else at any token), from `seed`;
  - `stamp`: each token of a streamed answer is `<n>@<unix time it was sent>`, so a
    benchmark can tell how long each took to arrive and whether any was lost;
  - `markdown`: a stage's reasoning comes as Markdown sections (headings, paragraphs,
    lists, tables) instead of one paragraph;
  - `requests: []` forgets the requests received (it keeps the last `--keep` at most).

It binds loopback only: it hands out the prompts it received, and obeys anyone who can
reach it.
"""

import argparse
import asyncio
import hashlib
import ipaddress
import json
import random
import socket
import time
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any

from workflow.stages import CONTINUE

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
    # Random faults for requests the queue does not cover: {"429": 0.1, "drop": 0.1, ...};
    # a drop or stall falls at a random token.
    fault_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    # Each token of a streamed answer is "<n>@<unix time it was sent>" (for benchmarks).
    stamp: bool = False
    # A stage's reasoning comes as Markdown: headed sections of a paragraph, a list and
    # now and then a table.
    markdown: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    keep: int = 5000  # requests kept, the latest

    def next_fault(self, rng: random.Random) -> str:
        if self.faults:
            return self.faults.pop(0)
        roll = rng.random()
        for fault, rate in self.fault_rates.items():
            if roll < rate:
                return fault
            roll -= rate
        return ""


STAMP = "<stamp>"
# What each control key takes: a type, and a check of the value.
CONTROL_KEYS = {
    "ttft": ((int, float), lambda seconds: seconds >= 0),
    "tps": ((int, float), lambda rate: rate > 0),
    "words": (int, lambda words: words >= 1),
    "faults": (list, lambda faults: all(isinstance(f, str) for f in faults)),
    "fault_rates": (dict, lambda rates: all(isinstance(r, int | float) for r in rates.values())),
    "seed": (int, lambda seed: True),
    "stamp": (bool, lambda stamp: True),
    "markdown": (bool, lambda markdown: True),
    "requests": (list, lambda requests: requests == []),  # only to forget them
}
# What a prompt-injected answer might carry: each would send the case out if obeyed.
INJECTED = (
    "See [the guideline](https://evil.example/?case=leak), <https://evil.example/auto>, "
    'https://evil.example/bare, <a href="https://evil.example/raw">raw</a> and '
    "![pixel](https://evil.example/pixel.png)"
)


# Faults answered with an HTTP error before the first token.
ERRORS = {
    "400": "simulated bad request",
    "401": "simulated invalid API key",
    "429": "rate limited",
    "500": "simulated server error",
}
TAGS = ("<detailed>", "</detailed>", "<summary>", "</summary>")
# What it names when a prompt asks for the can't-miss diagnoses.
CANT_MISS = ("pulmonary embolism", "acute coronary syndrome", "aortic dissection")


def answer(
    messages: list[dict[str, str]],
    words: int,
    *,
    summary: bool = True,
    cant_miss: bool = True,
    markdown: bool = False,
) -> str:
    """The deterministic answer to a conversation; asked to carry on, text of its own."""
    if len(messages) >= 2 and messages[-1]["content"] == CONTINUE:
        return carrying_on(messages[:-2], messages[-2]["content"], words)
    prompt = messages[-1]["content"] if messages else ""
    digest = _digest(prompt)
    body = _words(digest, words)
    if "<detailed>" not in prompt:  # not a stage: a summarising call or a chat reply
        return body
    first_line = prompt.splitlines()[0][:80]
    reasoning = f"\n\n{_sections(body)}\n" if markdown else f" {body}."
    text = f"<detailed>Simulated reasoning on {first_line}:{reasoning}</detailed>"
    if "<cant_miss>" in prompt and cant_miss:
        text += "\n<cant_miss>\n" + "\n".join(CANT_MISS) + "\n</cant_miss>"
    if summary:
        text += f"\n<summary>Simulated summary {digest % 10000}: {body[:60]}.</summary>"
    return text


def carrying_on(messages: list[dict[str, str]], partial: str, words: int) -> str:
    """What the simulated model writes when asked to carry on after `partial`: new words
    (never the rest of an earlier answer, so a lost tail cannot come back by itself),
    then whatever the partial left open, a tag it stopped inside included."""
    digest = _digest(partial)
    body = _words(digest, max(1, words // 3))
    if "<detailed>" not in messages[-1]["content"]:
        return f" {body} (continued)."
    done = 0  # the tags of the answer's format the partial wrote, in order
    at = 0
    while done < len(TAGS) and (found := partial.lower().find(TAGS[done], at)) != -1:
        at, done = found + len(TAGS[done]), done + 1
    start = partial.rfind("<", at)
    text = ""
    if done < len(TAGS) and start != -1 and TAGS[done].startswith(partial[start:].lower()):
        text, done = TAGS[done][len(partial) - start :], done + 1  # finish the tag
    reasoning = f" Simulated reasoning carried on: {body}.</detailed>"
    summary = f"\n<summary>Simulated summary carried on {digest % 10000}: {body[:60]}.</summary>"
    rest = {0: "<detailed>" + reasoning + summary, 1: reasoning + summary, 2: summary}
    return text + rest.get(done, f" {body[:60]} (carried on).</summary>" if done == 3 else "")


def injected(text: str) -> str:
    """The answer with links to elsewhere in its reasoning and in its summary."""
    if "</detailed>" not in text:
        return f"{text} {INJECTED}"
    return text.replace("</detailed>", f" {INJECTED}</detailed>").replace(
        "</summary>", f" {INJECTED}</summary>"
    )


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def _sections(body: str) -> str:
    """Words as a clinician's note comes: sections of a heading, a paragraph and a list,
    every third with a table."""
    words, sections = body.split(" "), []
    for n, at in enumerate(range(0, len(words), 60)):
        part = words[at : at + 60]
        section = f"### Section {n + 1}\n\n{' '.join(part[:30]).capitalize()}."
        items = [" ".join(part[i : i + 10]) for i in range(30, len(part), 10)]
        section += "\n\n" + "\n".join(f"- {item}" for item in items) if items else ""
        if n % 3 == 2:
            section += f"\n\n| finding | value |\n|---|---|\n| {part[0]} | {part[-1]} |"
        sections.append(section)
    return "\n\n".join(sections)


def _words(digest: int, count: int) -> str:
    return " ".join(WORDS[(digest + n) % len(WORDS)] for n in range(count))


def tokens(text: str) -> list[str]:
    """Split into word-sized tokens that join back into the text; tags come split in two."""
    out = []
    for n, word in enumerate(text.split(" ")):
        piece = word if n == 0 else " " + word
        cut = len(piece) // 2
        out.extend(p for p in (piece[:cut], piece[cut:]) if p)
    return out


class Simulator:
    """A plain asyncio HTTP/1.1 server: a fault must be able to cut the socket itself."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.rng = random.Random(self.config.seed)

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._handle, host, port)
        async with server:
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            method, path, _ = request_line.split(" ", 2)
            length = 0
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length) or b"{}")
            await self._respond(method, path, body, _Response(writer))
            if not writer.is_closing():
                await writer.drain()
                writer.close()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            writer.transport.abort()

    async def _respond(self, method: str, path: str, body: dict, response: "_Response") -> None:
        if path == "/control" and method == "POST":
            if problem := _control_problem(body):
                return response.json(400, {"error": {"message": problem}})
            for key, value in body.items():
                setattr(self.config, key, value)
            if "seed" in body:
                self.rng.seed(body["seed"])
            return response.json(200, {"ok": True})
        if path == "/control":
            return response.json(200, asdict(self.config))
        if path.endswith("/chat/completions") and method == "POST":
            return await self._complete(body, response)
        return response.json(404, {"error": {"message": "not found"}})

    async def _complete(self, request: dict[str, Any], response: "_Response") -> None:
        config = self.config
        written: dict[str, str] = {}
        received = {**request, "written": written, "complete": False}
        config.requests.append(received)
        del config.requests[: -config.keep]
        fault = received["fault"] = config.next_fault(self.rng)
        await asyncio.sleep(config.ttft)
        if fault in ERRORS:
            headers = {"Retry-After": "1"} if fault == "429" else {}
            message = ERRORS[fault]
            if fault == "400":  # quoting the request back, as real providers' 400s can
                message += f": {request['messages'][-1]['content'][:300]!r}"
            return response.json(int(fault), {"error": {"message": message}}, headers)
        if fault == "nostream" and request.get("stream"):
            return response.json(400, {"error": {"message": "stream is not supported here"}})
        text = answer(
            request["messages"],
            config.words,
            summary=fault != "nosummary",
            cant_miss=fault != "nocantmiss",
            markdown=config.markdown,
        )
        if fault == "links":
            text = injected(text)
        model = request.get("model", "simulator")
        if not request.get("stream"):
            written["content"], received["complete"] = text, True
            return response.json(200, _completion(model, text))
        response.start(200, {"Content-Type": "text/event-stream"})
        kind, _, at = fault.partition("@")
        if not at:  # a quarter of random cuts before any text, the rest anywhere
            at = "0" if self.rng.random() < 0.25 else str(self.rng.randrange(len(tokens(text))))
        if kind in ("drop", "stall"):
            received["fault"] = f"{kind}@{at}"
        pieces = [("content", piece) for piece in tokens(text)]
        if config.stamp:
            pieces = [("content", "<detailed>"), *[("content", STAMP)] * config.words]
            pieces.append(("content", "</detailed>\n<summary>Stamped tokens.</summary>"))
        if kind == "thinking":
            pieces = [("reasoning_content", p) for p in tokens("Thinking it over first.")] + pieces
        limit = request.get("max_tokens") or len(pieces)
        finish = "length" if len(pieces) > limit else "stop"
        pieces = pieces[:limit]
        for n, (name, piece) in enumerate(pieces):
            if kind == "drop" and n == int(at):
                return response.cut()
            if kind == "stall" and n == int(at):
                await asyncio.Event().wait()
            if piece is STAMP:
                piece = f" {n}@{time.time():.6f}"
            response.event(_chunk(model, {name: piece}))
            written[name] = written.get(name, "") + piece
            await response.drain()
            await asyncio.sleep(1 / config.tps)
        response.event(_chunk(model, {}, finish_reason=finish))
        usage = {
            "prompt_tokens": len(str(request["messages"])) // 4,
            "completion_tokens": len(pieces),
            "total_tokens": 0,
        }
        response.event({**_chunk(model, {}), "choices": [], "usage": usage})
        response.chunk(b"data: [DONE]\n\n")
        response.chunk(b"")
        received["complete"] = True


def _control_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "send a JSON object"
    for key, value in body.items():
        if key not in CONTROL_KEYS:
            return f"unknown control key {key!r}"
        kind, valid = CONTROL_KEYS[key]
        if not isinstance(value, kind) or not valid(value):
            return f"{key}: {value!r} is not a valid value"
    return None


class _Response:
    """Chunked HTTP/1.1 responses: a cut before the last chunk is an error to the client."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def start(self, status: int, headers: dict[str, str]) -> None:
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Connection: close",
            "Transfer-Encoding: chunked",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def chunk(self, data: bytes) -> None:
        self.writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def event(self, payload: dict[str, Any]) -> None:
        self.chunk(f"data: {json.dumps(payload)}\n\n".encode())

    def json(self, status: int, payload: dict[str, Any], headers: dict | None = None) -> None:
        self.start(status, {"Content-Type": "application/json", **(headers or {})})
        self.chunk(json.dumps(payload).encode())
        self.chunk(b"")

    async def drain(self) -> None:
        await self.writer.drain()

    def cut(self) -> None:
        """Close the connection mid-body: all written so far arrives, then the cut."""
        self.writer.close()


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


def _chunk(model: str, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "sim",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--ttft", type=float, default=0.05, help="seconds to first token")
    parser.add_argument("--tps", type=float, default=200.0, help="tokens per second")
    parser.add_argument("--words", type=int, default=60, help="words in each answer")
    parser.add_argument(
        "--fault", action="append", default=[], help="a fault for the next request (429, …)"
    )
    parser.add_argument("--keep", type=int, default=5000, help="requests kept in its log")
    args = parser.parse_args()
    if args.keep < 1:
        parser.error("--keep must be 1 or more")
    if not _loopback(args.host):
        parser.error("the simulator binds loopback only (127.0.0.1, ::1 or localhost)")
    config = Config(
        ttft=args.ttft, tps=args.tps, words=args.words, faults=args.fault, keep=args.keep
    )
    print(f"LLM simulator on http://{args.host}:{args.port}/v1", flush=True)
    asyncio.run(Simulator(config).serve(args.host, args.port))


if __name__ == "__main__":
    main()
