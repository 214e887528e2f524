"""The typed records that cross stage boundaries: a chat request, the completion and usage that come
back, a response or an error tied to its lm-eval document. Every stage reaches them downward.

Usage travels with each completion (not in a side table) so every later stage (cache, cost,
records, MLflow) sees the exact numbers the server reported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MISSING = "missing_response"  # finish reason of a document a replay file has no response for


@dataclass(frozen=True)
class Usage:
    """Token counts as the server reported them. Reasoning tokens are part of output_tokens.

    input_tokens counts every prompt token; cached_input_tokens (read from the provider's prompt
    cache) and cache_write_input_tokens (written to it, e.g. Anthropic's cache_creation_input_tokens)
    are parts of it, each billed at its own price. cache_write_input_tokens comes last so records
    written before it existed (positional or keyword) still load, as 0.
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_input_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ChatRequest:
    """Everything that changes the answer: the cache key is derived from all of it."""

    messages: tuple[dict[str, str], ...]
    model_id: str
    params: dict[str, Any] = field(default_factory=dict)
    # Stop sequences; the endpoint sends as many as the server accepts and applies all client-side.
    stop: tuple[str, ...] = ()
    # Which of an item's repeated samples this is (task.repeats): repeats are separate answers, never
    # one cached answer served k times. 0 stays out of the key, so single-sample keys never change.
    sample: int = 0

    def identity(self) -> dict[str, Any]:
        return {
            "messages": list(self.messages),
            "model_id": self.model_id,
            "params": self.params,
            "stop": list(self.stop),
            **({"sample": self.sample} if self.sample else {}),
        }


@dataclass(frozen=True)
class Completion:
    """One response: the final text, the reasoning kept apart, and what the server said about it."""

    text: str
    reasoning: str | None
    finish_reason: str | None
    usage: Usage
    served_model: str | None
    system_fingerprint: str | None
    latency_s: float
    usage_reported: bool = True
    # "reported" | "suspect" (billed at the request's worst case) | "estimated" (none reported): see
    # harness.endpoints.usage_checks; the note names why.
    usage_status: str = "reported"
    usage_note: str | None = None
    # Streamed responses only (None otherwise): request sent -> first token, -> first answer token
    # (after reasoning), output tokens per second after the first, the longest gap between chunks.
    ttft_s: float | None = None
    answer_ttft_s: float | None = None
    tokens_per_s: float | None = None
    max_gap_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Completion":
        d = dict(d)
        d["usage"] = Usage(**d["usage"])
        return cls(**d)


@dataclass(frozen=True)
class ResponseRecord:
    """One generation request's outcome, tied to the lm-eval document it answers."""

    task: str
    doc_id: int
    doc_key: str
    repeat: int
    cache_key: str  # the request itself is stored under this key in the cache
    completion: Completion
    cost_usd: float  # at the price in force when it was bought (cached: when first bought)
    from_cache: bool

    @property
    def new_cost_usd(self) -> float:
        return 0.0 if self.from_cache else self.cost_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "doc_id": self.doc_id, "doc_key": self.doc_key, "repeat": self.repeat,
            "cache_key": self.cache_key,
            "completion": self.completion.to_dict(), "cost_usd": self.cost_usd, "from_cache": self.from_cache,
        }


@dataclass(frozen=True)
class SampleError:
    """A request that did not produce a response: recorded as an error, never scored as a wrong
    answer, never cached (so the same command retries exactly these)."""

    task: str
    doc_id: int
    doc_key: str
    repeat: int
    cache_key: str
    kind: str  # RequestFailed.kind, or "budget" for a request the budget did not allow
    status: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "doc_id": self.doc_id, "doc_key": self.doc_key, "repeat": self.repeat,
                "cache_key": self.cache_key, "error": {"kind": self.kind, "status": self.status,
                                                       "message": self.message}}
