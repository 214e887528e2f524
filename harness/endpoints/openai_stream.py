"""A streamed chat completion (server-sent events) read into the body a non-streamed one would have had,
with the timing only a stream shows: time to first token, to the first answer token (after
reasoning), output tokens per second, and the gaps between chunks.

Enters: the lines of a streaming HTTP response (harness.endpoints.wire) and the time the request was sent. Leaves: a
chat.completion-shaped dict (so one parser serves both) and a StreamTiming. Untrusted input, bounded:
a chunk that does not arrive within the idle timeout (keep-alive comments do not count as
progress) or a first token later than its own timeout raise StreamStalled; a malformed event raises
StreamMalformed; the sizes of lines and of the stream are capped where the bytes are read (wire).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from collections.abc import AsyncIterator
from typing import Any



class StreamStalled(Exception):
    """No chunk within the idle (or first-token) timeout."""


class StreamCut(Exception):
    """The stream ended (EOF) before a finish_reason or [DONE]: the answer is incomplete."""


class StreamTimedOut(Exception):
    """The whole answer took longer than the attempt's total timeout (tokens were still coming)."""


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

    def token(self, *, answer: bool, at: float | None = None) -> None:
        """A token arrived (`at`: when, on the perf_counter clock; now if not given)."""
        self.tokens(1, answer=answer, at=time.perf_counter() if at is None else at)

    def tokens(self, count: int, *, answer: bool, at: float) -> None:
        """`count` tokens that arrived together (one network read) at `at`; `answer`: one was content."""
        if self.first is None:
            self.first = at
        elif self.last is not None:
            self.max_gap = max(self.max_gap, at - self.last)
        if answer and self.first_answer is None:
            self.first_answer = at
        self.last = at
        self.chunks += count

    def timing(self) -> StreamTiming:
        return StreamTiming(
            ttft_s=None if self.first is None else self.first - self.sent,
            answer_ttft_s=None if self.first_answer is None else self.first_answer - self.sent,
            generation_s=None if self.first is None or self.last is None else self.last - self.first,
            max_gap_s=self.max_gap if self.chunks > 1 else None, chunks=self.chunks)


# The idle deadline moves with progress at most this often (and a tenth of the idle timeout for short
# ones): re-arming a timer for every token cost more CPU than parsing the token.
REARM_EVERY_S = 1.0


async def read_stream(batches: AsyncIterator[list[bytes]], sent_at: float, *, idle_timeout_s: float,
                      first_token_timeout_s: float, total_timeout_s: float = float("inf"),
                      ) -> tuple[dict[str, Any], StreamTiming]:
    """Read the server-sent events of a chat completion (each event's bytes, in batches as they arrive:
    wire.stream_events) to [DONE] or EOF. The first-token deadline runs from `sent_at` and covers
    connecting and the response headers too (the request is sent when the first batch is asked for);
    after the first token, the stream is cut once no token came for idle_timeout_s (measured to within
    REARM_EVERY_S), and in any case total_timeout_s after `sent_at` (StreamTimedOut). Only tokens are
    progress: comments and empty events are not. One timer serves all three deadlines (a timer each
    cost more per request than parsing its events)."""
    content: list[str] = []
    reasoning: list[str] = []
    body: dict[str, Any] = {"object": "chat.completion", "choices": []}
    finish_reason = None
    marks = TokenMarks(sent_at)
    done = False
    loop = asyncio.get_running_loop()
    rearm_s = min(REARM_EVERY_S, idle_timeout_s / 10)
    armed_at = -float("inf")  # loop time the idle deadline was last moved (none yet: first-token deadline)
    deadline = asyncio.timeout(None)  # no task per line, unlike wait_for
    sent_loop = loop.time() - (time.perf_counter() - sent_at)  # sent_at on the loop's clock
    end = sent_loop + total_timeout_s
    try:
        async with deadline:
            deadline.reschedule(max(min(sent_loop + first_token_timeout_s, end), loop.time() + 0.001))
            async for blocks in batches:
                events = _event_data(blocks)
                if b"[DONE]" in events:
                    events = events[:events.index(b"[DONE]")]
                    done = True
                tokens, answered = 0, False
                for chunk in _parse_events(events):
                    if "id" not in body or chunk.get("usage"):  # the first event and the usage event
                        for key in ("id", "model", "system_fingerprint", "created"):
                            if chunk.get(key) is not None:
                                body[key] = chunk[key]
                        if chunk.get("usage"):
                            body["usage"] = chunk["usage"]
                    choices = chunk.get("choices")
                    if not choices:
                        continue
                    choice = choices[0] if type(choices) is list else None
                    if type(choice) is not dict or choice.get("index", 0) not in (0, None):
                        choice = _first_choice(choices)
                        if choice is None:
                            continue
                    delta = choice.get("delta")
                    if type(delta) is dict:
                        text = delta.get("content")
                        thought = delta.get("reasoning_content") or delta.get("reasoning")
                        if thought and type(thought) is str:
                            reasoning.append(thought)
                            tokens += 1
                        if text and type(text) is str:
                            content.append(text)
                            tokens += 1 if not (thought and type(thought) is str) else 0
                            answered = True
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
                if tokens:
                    marks.tokens(tokens, answer=answered, at=time.perf_counter())  # one read: one arrival time
                    now = loop.time()
                    if not done and now - armed_at >= rearm_s:  # a finished answer needs no new deadline
                        deadline.reschedule(min(now + idle_timeout_s, end))
                        armed_at = now
                if done:
                    break
        if not done and finish_reason is None:
            raise StreamCut("the stream ended before the answer was complete (no finish_reason, no [DONE])")
    except TimeoutError:
        if loop.time() + 0.001 >= end:
            raise StreamTimedOut(f"the answer took longer than {total_timeout_s:g} s") from None
        what, limit = ("first token", first_token_timeout_s) if marks.first is None else ("token", idle_timeout_s)
        raise StreamStalled(f"no {what} came within {limit:g} s") from None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) if content else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if content or reasoning or finish_reason:
        body["choices"] = [{"index": 0, "message": message, "finish_reason": finish_reason}]
    return body, marks.timing()


def _event_data(blocks: list[bytes]) -> list[bytes]:
    """The data of each event (SSE: an event's `data:` lines, joined by newlines); blocks without data
    (": keep-alive" comments, other fields) are not events. The common block is one `data:` line."""
    events = []
    for block in blocks:
        if block.startswith(b"data:") and b"\n" not in block:
            events.append(block[5:].strip())
            continue
        lines = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
        if lines:
            events.append(b"\n".join(lines))
    return events


def _first_choice(choices: Any) -> dict[str, Any] | None:
    """The choice with index 0 (or no index) of a chunk: deltas of other choices are other answers."""
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) in (0, None):
            return choice
    return None


def _parse_events(events: list[bytes]) -> list[dict[str, Any]]:
    """The JSON objects of a read's events, parsed in one call (a call per event cost more than the
    parsing): each event wrapped in its own array, so events that are not JSON alone rarely parse
    together, and the count checked; an event that is not one JSON object raises StreamMalformed.
    (A server crafting events that parse only together gains nothing: it chooses the content anyway.)"""
    if not events:
        return []
    try:
        wrapped = json.loads(b"[[" + b"],[".join(events) + b"]]")
    except (ValueError, RecursionError):
        wrapped = None
    if wrapped is not None and len(wrapped) == len(events):
        chunks = [w[0] if type(w) is list and len(w) == 1 else None for w in wrapped]
        if all(type(c) is dict and not c.get("error") for c in chunks):
            return chunks  # type: ignore[return-value]
    for data in events:  # something is wrong: find the event and say what
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise StreamMalformed(f"an event that is not JSON: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise StreamMalformed(f"an event that is not an object: {data[:200]!r}")
        if chunk.get("error"):
            raise StreamMalformed(f"an error event: {str(chunk['error'])[:300]}")
    raise StreamMalformed(f"events that are not one JSON object each: {b' | '.join(events)[:200]!r}")
