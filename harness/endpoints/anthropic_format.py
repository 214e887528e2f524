"""The Messages API dialect (POST /v1/messages): our OpenAI-style ChatRequest as Messages API
arguments (system prompt apart, thinking and effort settings, stop sequences it accepts), and a
Message body read into a Completion (text and thinking blocks apart, stop_reason in OpenAI's words,
usage with cache reads and writes, checked by usage_checks). Documented shapes:
https://platform.claude.com/docs/en/api/messages.

Enters: a ChatRequest and the model config; a Message body. Leaves: keyword arguments for
`messages.create`; a Completion.
"""

from __future__ import annotations

import logging
from typing import Any

from harness.config import ModelConfig
from harness.endpoints.base import ChatRequest, Completion, EndpointError, RequestFailed, Usage
from harness.endpoints.openai_format import truncate_at_stop
from harness.endpoints.usage_checks import is_blank, read_counts, vet

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.anthropic.com"

# stop_reason (Message.stop_reason) -> our finish_reason, in OpenAI's words where one exists.
_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                   "model_context_window_exceeded": "length"}

# output_config.effort values the Messages API accepts.
_EFFORTS = ("low", "medium", "high", "xhigh", "max")

def normalize_base_url(base_url: str | None) -> str:
    """The SDK appends /v1/messages itself: a compatibility-layer URL ending in /v1 loses it."""
    url = (base_url or DEFAULT_BASE_URL).rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def thinking_config(model: ModelConfig, max_tokens: int) -> dict[str, Any] | None:
    """The `thinking` request field, from model.generation.thinking_budget_tokens / model.thinking.

    - a budget: manual extended thinking {"type": "enabled", "budget_tokens": N}; the API wants
      1024 <= N < max_tokens. Deprecated on Opus/Sonnet 4.6 and rejected (400) from Claude 4.7 on.
    - model.thinking=true without a budget: adaptive thinking, the documented mode for Opus 4.6+ and
      the only one Opus 4.7 accepts, with display "summarized": Opus 4.7 otherwise returns thinking
      blocks with empty text (display defaults to "omitted" there) and we keep the reasoning.
    - model.thinking=false or unset: no field; thinking is off unless asked for.
    A `thinking` dict in model.generation.extra_body is merged over what is built here (e.g.
    {"display": "omitted"}), or sent as it is when neither setting is given.
    """
    g = model.generation
    user = g.extra_body.get("thinking") if isinstance(g.extra_body, dict) else None
    budget = g.thinking_budget_tokens
    if budget is not None:
        if model.thinking is False:
            raise EndpointError(
                f"model '{model.name}' sets model.generation.thinking_budget_tokens={budget} but "
                f"model.thinking=false; drop one of them.")
        if budget < 1024 or budget >= max_tokens:
            raise EndpointError(
                f"model '{model.name}': model.generation.thinking_budget_tokens={budget} must be at least "
                f"1024 and below max_tokens={max_tokens} (model.generation.max_tokens), as Anthropic requires.")
        built: dict[str, Any] | None = {"type": "enabled", "budget_tokens": int(budget)}
    elif model.thinking:
        built = {"type": "adaptive", "display": "summarized"}
    elif model.thinking is False:
        built = None
    else:
        return dict(user) if isinstance(user, dict) else None
    if built is not None and isinstance(user, dict):
        built.update(user)
    return built


def build_message_kwargs(model: ModelConfig, request: ChatRequest) -> dict[str, Any]:
    """Keyword arguments for `messages.create` from our OpenAI-style request (as `generation_params`
    builds it: max_tokens, temperature, top_p, seed, reasoning_effort, extra_body)."""
    params = dict(request.params)
    extra_body = dict(params.pop("extra_body", None) or {})
    # generation_params turns model.thinking into DeepSeek's {"thinking": {"type": ...}} toggle;
    # Anthropic's field is built from the model config by thinking_config instead.
    extra_body.pop("thinking", None)
    max_tokens = params.pop("max_tokens", None)
    if max_tokens is None:
        raise EndpointError(
            f"model '{model.name}': the Anthropic Messages API requires max_tokens; set "
            f"model.generation.max_tokens (conf/model/{model.name}.yaml).")
    # No seed in the Messages API: sampling cannot be pinned, so it is dropped (and still part of the
    # cache key, like every request parameter).
    params.pop("seed", None)
    effort = params.pop("reasoning_effort", None)

    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.get("role") == "system":
            system.append(message.get("content") or "")
        else:
            messages.append({"role": message["role"], "content": message["content"]})

    kwargs: dict[str, Any] = {"model": request.model_id, "max_tokens": int(max_tokens), "messages": messages}
    if system:
        kwargs["system"] = "\n\n".join(system)
    # The API rejects empty and whitespace-only stop sequences (400); those, and any past
    # model.max_stop_sequences, are applied client-side only (parse_message cuts at every stop).
    stops = [s for s in request.stop if s and s.strip()][: max(model.max_stop_sequences, 0)]
    if stops:
        kwargs["stop_sequences"] = stops

    thinking = thinking_config(model, int(max_tokens))
    thinking_on = bool(thinking) and thinking.get("type") != "disabled"
    if thinking is not None:
        kwargs["thinking"] = thinking

    if effort is not None:
        if effort not in _EFFORTS:
            raise EndpointError(
                f"model '{model.name}': model.generation.reasoning_effort={effort!r} is not an Anthropic "
                f"effort level; use one of {', '.join(_EFFORTS)} (sent as output_config.effort).")
        output_config = dict(extra_body.pop("output_config", None) or {})
        output_config.setdefault("effort", effort)
        kwargs["output_config"] = output_config

    # Sampling parameters travel in the body (the SDK has no typed argument for them). Thinking is not
    # compatible with temperature (nor top_k) and accepts top_p only in [0.95, 1], so with thinking on
    # they are not sent; Claude Opus 4.7 rejects temperature / top_p / top_k altogether (configure
    # model.generation.temperature: null for it).
    for name in ("temperature", "top_p", "top_k"):
        value = params.pop(name, None)
        if value is None:
            continue
        if thinking_on and not (name == "top_p" and 0.95 <= value <= 1):
            log.debug("not sending %s=%s with thinking (Anthropic rejects it)", name, value)
            continue
        extra_body.setdefault(name, value)
    if params:
        raise EndpointError(
            f"model '{model.name}': {sorted(params)} are not Anthropic Messages API parameters; remove them "
            f"from model.generation or put Anthropic fields in model.generation.extra_body.")
    if extra_body:
        kwargs["extra_body"] = extra_body
    return kwargs


def _blocks_text(blocks: list[dict[str, Any]], kinds: dict[str, str | None]) -> tuple[str, bool]:
    parts, found = [], False
    for block in blocks:
        kind = block.get("type")
        if kind in kinds:
            found = True
            field = kinds[kind]
            parts.append(str(block.get(field) or "") if field else "[redacted]")
    return "".join(parts), found


def parse_usage(usage: dict[str, Any] | None) -> Usage:
    """Our Usage from the Messages API `usage` object.

    Anthropic's `input_tokens` counts only the prompt tokens after the last cache breakpoint; the
    prompt is input_tokens + cache_read_input_tokens + cache_creation_input_tokens, and that sum is
    our input_tokens. output_tokens includes thinking. Thinking tokens are reported apart only in
    `output_tokens_details.thinking_tokens` (newer API versions); without it reasoning_tokens is 0.
    """
    return read_usage(usage)[0]


_USAGE_FIELDS = {"input": ("input_tokens",), "read": ("cache_read_input_tokens",),
                 "written": ("cache_creation_input_tokens",), "output": ("output_tokens",),
                 "thinking": ("output_tokens_details", "thinking_tokens")}


def read_usage(usage: Any) -> tuple[Usage, list[str]]:
    """parse_usage, and what was wrong with the counts (a count that is not a non-negative whole
    number reads as 0 and is named; see harness.endpoints.usage_checks)."""
    if not usage:
        return Usage(), []
    if not isinstance(usage, dict):
        return Usage(), [f"usage is not an object: {str(usage)[:40]!r}"]
    c, problems = read_counts(usage, _USAGE_FIELDS)
    return Usage(input_tokens=c["input"] + c["read"] + c["written"], cached_input_tokens=c["read"],
                 output_tokens=c["output"], reasoning_tokens=c["thinking"],
                 cache_write_input_tokens=c["written"]), problems


def parse_message(body: dict[str, Any], latency_s: float, stop: tuple[str, ...] = (),
                  request: ChatRequest | None = None) -> Completion:
    """A Completion from a Messages API response body (a Message object as the server sent it); with
    the request, its usage is checked against what the request could produce (usage_checks.vet)."""
    if body.get("type") not in (None, "message") or not isinstance(body.get("content"), list):
        raise RequestFailed(f"the Anthropic endpoint answered something that is not a message: {str(body)[:300]}",
                            kind="bad_response")
    blocks = [b for b in body["content"] if isinstance(b, dict)]
    text, _ = _blocks_text(blocks, {"text": "text"})
    reasoning, has_reasoning = _blocks_text(blocks, {"thinking": "thinking", "redacted_thinking": None})
    stop_reason = body.get("stop_reason")
    if is_blank(text) and not has_reasoning and stop_reason != "max_tokens":
        # The server failed to answer (not the model answering wrongly): an error, retried by a re-run.
        raise RequestFailed(f"the Anthropic endpoint gave an empty answer (stop_reason {stop_reason!r})", kind="empty")
    usage, problems = read_usage(body.get("usage"))
    completion = Completion(
        text=truncate_at_stop(text, stop),
        reasoning=reasoning if has_reasoning else None,
        finish_reason=_FINISH_REASONS.get(stop_reason, stop_reason),
        usage=usage,
        served_model=body.get("model"),
        system_fingerprint=None,  # the Messages API has none
        latency_s=latency_s,
        usage_reported=bool(body.get("usage")),
    )
    return vet(completion, request, problems) if request is not None else completion
