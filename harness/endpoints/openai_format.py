"""The OpenAI chat-completions dialect: request arguments for a provider, and a response body read into
a Completion (text, reasoning kept apart, finish reason, usage across the providers' dialects, checked).

Enters: a ChatRequest and the model config; a response body. Leaves: keyword arguments for the
request; a Completion whose usage has been vetted (harness.endpoints.usage_checks).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from harness.config import ModelConfig
from harness.endpoints.base import ChatRequest, Completion, RequestFailed, Usage
from harness.endpoints.usage_checks import read_counts, vet

_THINK_BLOCK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)

# Providers whose API wants `max_completion_tokens` (OpenAI's reasoning-era name) over `max_tokens`.
_MAX_COMPLETION_TOKENS_PROVIDERS = {"openai"}


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


_USAGE_FIELDS = {
    "input": ("prompt_tokens",), "cached": ("prompt_tokens_details", "cached_tokens"),
    "cache_hit": ("prompt_cache_hit_tokens",), "output": ("completion_tokens",),
    "reasoning": ("completion_tokens_details", "reasoning_tokens"),
}


def read_usage(usage: Any) -> tuple[Usage, list[str]]:
    """Usage from any provider's dialect of the OpenAI `usage` object, and what was wrong with it.

    Cached prompt tokens: OpenAI/vLLM `prompt_tokens_details.cached_tokens`, DeepSeek
    `prompt_cache_hit_tokens`. Reasoning tokens: `completion_tokens_details.reasoning_tokens`
    (already included in `completion_tokens`, which is what providers bill as output). A count that
    is not a non-negative whole number reads as 0 and is named (harness.endpoints.usage_checks).
    """
    if not usage:
        return Usage(), []
    if not isinstance(usage, dict):
        return Usage(), [f"usage is not an object: {str(usage)[:40]!r}"]
    counts, problems = read_counts(usage, _USAGE_FIELDS)
    cached = counts["cached"] if _get(usage, "prompt_tokens_details", "cached_tokens") is not None else counts["cache_hit"]
    return Usage(input_tokens=counts["input"], cached_input_tokens=cached, output_tokens=counts["output"],
                 reasoning_tokens=counts["reasoning"]), problems


def parse_usage(usage: dict[str, Any] | None) -> Usage:
    return read_usage(usage)[0]


def split_reasoning(message: dict[str, Any]) -> tuple[str, str | None]:
    """(final text, reasoning): DeepSeek `reasoning_content`, vLLM `reasoning`, or `<think>` blocks."""
    text = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning is None and "<think>" in text:
        blocks = _THINK_BLOCK.findall(text)
        reasoning = "\n".join(b.strip() for b in blocks)
        text = _THINK_BLOCK.sub("", text).strip()
    elif reasoning is None and "</think>" in text:  # the template opened <think> itself; the server kept the rest
        reasoning, _, text = text.partition("</think>")
        reasoning, text = reasoning.strip(), text.lstrip()
    return text, reasoning


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def parse_chat_completion(body: dict[str, Any], latency_s: float, stop: tuple[str, ...] = (),
                          request: ChatRequest | None = None) -> Completion:
    """A Completion from a chat.completions response body (as the server sent it); with the request,
    its usage is checked against what the request could produce (usage_checks.vet)."""
    choices = body.get("choices") or []
    if not choices:
        raise RequestFailed(f"the endpoint answered with no choices: {str(body)[:300]}", kind="empty_choices")
    choice = choices[0]
    text, reasoning = split_reasoning(choice.get("message") or {})
    usage, problems = read_usage(body.get("usage"))
    completion = Completion(
        text=truncate_at_stop(text, stop),
        reasoning=reasoning,
        finish_reason=choice.get("finish_reason"),
        usage=usage,
        served_model=_text(body.get("model")),
        system_fingerprint=_text(body.get("system_fingerprint")),
        latency_s=latency_s,
        usage_reported=bool(body.get("usage")),
    )
    return vet(completion, request, problems) if request is not None else completion


def _text(value: Any) -> str | None:
    """A server-sent label (model, fingerprint) as text of bounded length; anything else is no label."""
    return value[:200] if isinstance(value, str) else None


def build_request_kwargs(model: ModelConfig, request: ChatRequest) -> dict[str, Any]:
    """The keyword arguments for `chat.completions.create`, in this provider's dialect."""
    params = dict(request.params)
    extra_body = dict(params.pop("extra_body", None) or {})
    max_tokens = params.pop("max_tokens", None)
    kwargs: dict[str, Any] = {"model": request.model_id, "messages": list(request.messages)}
    if max_tokens is not None:
        key = "max_completion_tokens" if model.provider in _MAX_COMPLETION_TOKENS_PROVIDERS else "max_tokens"
        kwargs[key] = max_tokens
    kwargs.update({k: v for k, v in params.items() if v is not None})
    if request.stop and model.max_stop_sequences > 0:
        kwargs["stop"] = list(request.stop[: model.max_stop_sequences])
    if extra_body:
        kwargs["extra_body"] = extra_body
    return kwargs


def with_timing(completion: Completion, timing: Any) -> Completion:
    """The completion with a stream's timing (openai_stream.StreamTiming); tokens/s from the usage the
    server reported, else from the number of chunks (a token each, as llama.cpp and vLLM stream)."""
    if timing is None:
        return completion
    tokens = completion.usage.output_tokens if completion.usage_status == "reported" else timing.chunks
    return dataclasses.replace(completion, ttft_s=timing.ttft_s, answer_ttft_s=timing.answer_ttft_s,
                               tokens_per_s=timing.tokens_per_s(tokens), max_gap_s=timing.max_gap_s)
