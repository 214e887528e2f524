"""A streamed chat completion (server-sent events) read into the body a non-streamed one would have had,
with the timing only a stream shows: time to first token, to the first answer token (after
reasoning), output tokens per second, and the gaps between chunks.

Enters: an open streaming HTTP response and the time the request was sent. Leaves: a
chat.completion-shaped dict (so one parser serves both) and a StreamTiming. Untrusted input, bounded:
a chunk that does not arrive within the idle timeout (keep-alive comments do not count as
progress), a first token later than its own timeout, or more than `max_bytes` of stream, raise
StreamStalled / StreamTooLong; a malformed event raises StreamMalformed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

MAX_STREAM_BYTES = 64 << 20


class StreamStalled(Exception):
    """No chunk within the idle (or first-token) timeout."""


class StreamCut(Exception):
    """The stream ended (EOF) before a finish_reason or [DONE]: the answer is incomplete."""


class StreamMalformed(Exception):
    """An event that is not a chat.completion.chunk."""


@dataclass(frozen=True)
class StreamTiming:
    ttft_s: float | None          # request sent -> first content or reasoning token
    answer_ttft_s: float | None   # request sent -> first answer (content) token
    generation_s: float | None    # first token -> last token
    max_gap_s: float | None       # longest wait between two chunks after the first
    chunks: int

    def tokens_per_s(self, output_tokens: int) -> float | None:
        if not self.generation_s or output_tokens <= 1:
            return None
        return (output_tokens - 1) / self.generation_s  # the first token's time is in ttft

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TokenMarks:
    """When the tokens of a stream arrived: first, first answer token, last, the longest gap."""

    def __init__(self, sent: float):
        self.sent = sent
        self.first: float | None = None
        self.first_answer: float | None = None
        self.last: float | None = None
        self.max_gap = 0.0
        self.chunks = 0

    def token(self, *, answer: bool) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        elif self.last is not None:
            self.max_gap = max(self.max_gap, now - self.last)
        if answer and self.first_answer is None:
            self.first_answer = now
        self.last = now
        self.chunks += 1

    def timing(self) -> StreamTiming:
        return StreamTiming(
            ttft_s=None if self.first is None else self.first - self.sent,
            answer_ttft_s=None if self.first_answer is None else self.first_answer - self.sent,
            generation_s=None if self.first is None or self.last is None else self.last - self.first,
            max_gap_s=self.max_gap if self.chunks > 1 else None, chunks=self.chunks)


async def read_stream(response: Any, sent_at: float, *, idle_timeout_s: float, first_token_timeout_s: float,
                      max_bytes: int = MAX_STREAM_BYTES) -> tuple[dict[str, Any], StreamTiming]:
    """Read the SSE stream of a chat completion to its end ([DONE] or EOF)."""
    content: list[str] = []
    reasoning: list[str] = []
    body: dict[str, Any] = {"object": "chat.completion", "choices": []}
    finish_reason = None
    marks = TokenMarks(sent_at)
    size = 0
    done = False
    loop = asyncio.get_running_loop()
    deadline = asyncio.timeout(None)  # rescheduled on progress; no task per line, unlike wait_for
    try:
        async with deadline:
            deadline.reschedule(loop.time() + max(first_token_timeout_s - (time.perf_counter() - sent_at), 0.001))
            async for line in response.aiter_lines():
                size += len(line)
                if size > max_bytes:
                    raise StreamMalformed(f"a stream longer than {max_bytes} bytes")
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, event names: not progress
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except (ValueError, RecursionError):
                    raise StreamMalformed(f"an event that is not JSON: {data[:200]!r}") from None
                if not isinstance(chunk, dict):
                    raise StreamMalformed(f"an event that is not an object: {data[:200]!r}")
                if "error" in chunk:
                    raise StreamMalformed(f"an error event: {str(chunk['error'])[:300]}")
                if marks.first is not None:  # events before the first token do not move its deadline
                    deadline.reschedule(loop.time() + idle_timeout_s)
                for key in ("id", "model", "system_fingerprint", "created"):
                    if chunk.get(key) is not None:
                        body[key] = chunk[key]
                if isinstance(chunk.get("usage"), dict) or chunk.get("usage"):
                    body["usage"] = chunk["usage"]
                choices = chunk.get("choices") or []
                choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
                if choice is None:
                    continue
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                text = delta.get("content")
                thought = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(thought, str) and thought:
                    reasoning.append(thought)
                if isinstance(text, str) and text:
                    content.append(text)
                if (isinstance(text, str) and text) or (isinstance(thought, str) and thought):
                    marks.token(answer=isinstance(text, str) and bool(text))
                    deadline.reschedule(loop.time() + idle_timeout_s)
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        if not done and finish_reason is None:
            raise StreamCut("the stream ended before the answer was complete (no finish_reason, no [DONE])")
    except TimeoutError:
        what, limit = ("the first token", first_token_timeout_s) if marks.first is None else ("the next chunk", idle_timeout_s)
        raise StreamStalled(f"no {what} within {limit:g} s") from None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) if content else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if content or reasoning or finish_reason:
        body["choices"] = [{"index": 0, "message": message, "finish_reason": finish_reason}]
    return body, marks.timing()
