"""Claude through Anthropic's own Messages API (POST /v1/messages) with the official `anthropic` SDK.

Why not the OpenAI compatibility layer: the native API reports prompt-cache reads and writes
(`cache_read_input_tokens`, `cache_creation_input_tokens`), returns thinking as its own content
blocks, and takes the thinking / effort settings the compatibility layer cannot express.

The SDK does HTTP, timeouts and retries (408 / 409 / 429 / 5xx including 529 overloaded, connection
errors; exponential backoff honouring `retry-after-ms` / `retry-after`); it never retries 400 / 401 /
403 / 404 / 413 / 422. We add bounded concurrency, the mapping from our OpenAI-style ChatRequest, and
errors that say what to do (fatal EndpointError for the configuration's faults, RequestFailed for one
request's). Documented shapes: https://platform.claude.com/docs/en/api/messages and
https://platform.claude.com/docs/en/api/errors.
"""

from __future__ import annotations

import logging
import re
import asyncio
import time
from typing import Any

import anthropic

from harness.config import ModelConfig
from harness.endpoints.base import ChatRequest, Completion, EndpointError, RequestFailed, Usage
from harness.endpoints.concurrency import AdaptiveLimiter
from harness.endpoints.openai_compat import resolve_api_key, truncate_at_stop
from harness.endpoints.openai_format import with_timing
from harness.endpoints.openai_stream import StreamStalled, StreamTiming, TokenMarks
from harness.endpoints.usage_checks import is_blank, read_counts, vet

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.anthropic.com"

# stop_reason (Message.stop_reason) -> our finish_reason, in OpenAI's words where one exists.
_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}

# output_config.effort values the Messages API accepts.
_EFFORTS = ("low", "medium", "high", "xhigh", "max")

# A 400 (invalid_request_error) whose message points at the configuration, not at this one prompt:
# every later request would fail the same way, so the run stops with the message instead of
# recording one error per sample. Anything else (e.g. "prompt is too long") is that request's failure.
_CONFIG_400 = re.compile(
    r"\bmodel\b|api[ _-]?key|credit balance|billing|spend limit|\bthinking\b|budget_tokens|temperature|"
    r"\btop_[pk]\b|\beffort\b|output_config|max_tokens|extra inputs|not permitted|stop_sequences",
    re.IGNORECASE,
)
# ... unless it is about this prompt's length, which only this request has.
_PROMPT_400 = re.compile(r"prompt is too long|input length|context (?:window|length|limit)|too many (?:input )?tokens",
                         re.IGNORECASE)
# 429s that no amount of waiting fixes (error.details.error_code, documented for spend limits).
_FATAL_429_CODES = {"enforced_spend_limit_reached"}


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


class AnthropicEndpoint:
    """Messages API calls over the anthropic SDK with at most `model.concurrency` requests in flight."""

    def __init__(self, model: ModelConfig, base_url: str | None, identity: str | None = None):
        self.model = model
        self.base_url = normalize_base_url(base_url or model.base_url)
        self.identity = identity or self.base_url
        self._api_key = resolve_api_key(model)
        self._client: anthropic.AsyncAnthropic | None = None
        # Adaptive like the OpenAI path: every 429 / 529 the SDK sees (its retries included) halves it.
        self.limiter = AdaptiveLimiter(model.concurrency)

    def _ensure_client(self) -> anthropic.AsyncAnthropic:
        # Made inside the running event loop: an async HTTP pool must not outlive its loop.
        if self._client is None:
            # An explicit api_key and base_url: the SDK then reads no credentials, profiles or
            # ANTHROPIC_BASE_URL from the environment. A timeout of our own also turns off the SDK's
            # refusal of non-streaming requests whose max_tokens might take over 10 minutes.
            self._client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self.base_url,
                max_retries=self.model.max_retries,
                timeout=self.model.request_timeout_s,
                http_client=anthropic.DefaultAsyncHttpxClient(event_hooks={"response": [self._on_response]}),
            )
        return self._client

    async def _on_response(self, response: Any) -> None:
        """httpx response hook: every HTTP response, including those the SDK is about to retry."""
        self.limiter.observe(response.status_code, f"{self.base_url} (model '{self.model.name}')")

    async def complete(self, request: ChatRequest, doc_key: str | None = None) -> Completion:
        kwargs = build_message_kwargs(self.model, request)  # config errors before any request
        client = self._ensure_client()
        timing = None
        async with self.limiter:
            started = time.perf_counter()
            try:
                if self.model.stream:
                    body, timing = await asyncio.wait_for(self._streamed(client, kwargs), self.model.attempt_timeout_s)
                else:
                    body = (await client.messages.create(**kwargs)).model_dump()
            except anthropic.APIError as exc:
                failure = self._explain(exc, request)
            except (StreamStalled, asyncio.TimeoutError) as exc:
                failure = RequestFailed(f"{self.base_url} (model '{self.model.name}'): the event stream "
                                        f"{exc or 'outlasted model.attempt_timeout_s'} (model.first_token_timeout_s / "
                                        f"model.idle_timeout_s / model.attempt_timeout_s)", kind="timeout")
            else:
                failure = None
            latency = time.perf_counter() - started
        if failure is not None:
            # Raised outside the except block so the SDK error (whose request carries the key in its
            # headers) is not attached as __context__ for some error reporter to print.
            raise failure
        return with_timing(parse_message(body, latency, request.stop, request), timing)

    async def _streamed(self, client: anthropic.AsyncAnthropic, kwargs: dict[str, Any]) -> tuple[dict[str, Any], StreamTiming]:
        """The Messages API event stream (message_start, content_block_*, message_delta) assembled into
        the Message a non-streamed call returns, with its timing; stalls end at the model's timeouts."""
        sent = time.perf_counter()
        stream = await client.messages.create(**kwargs, stream=True)
        message: dict[str, Any] = {}
        usage: dict[str, Any] = {}
        blocks: dict[int, dict[str, Any]] = {}
        marks = TokenMarks(sent)
        events = stream.__aiter__()
        try:
            while True:
                limit = self.model.first_token_timeout_s if marks.first is None else self.model.idle_timeout_s
                try:
                    event = await asyncio.wait_for(events.__anext__(), timeout=limit)
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    raise StreamStalled(f"sent no {'first token' if marks.first is None else 'next event'} "
                                        f"within {limit:g} s") from None
                kind = getattr(event, "type", None)
                if kind == "message_start":
                    message = event.message.model_dump()
                    usage = dict(message.get("usage") or {})
                elif kind == "content_block_start":
                    blocks[event.index] = event.content_block.model_dump()
                elif kind == "content_block_delta":
                    delta = event.delta.model_dump()
                    block = blocks.setdefault(event.index, {"type": "text", "text": ""})
                    if delta.get("type") == "text_delta":
                        block["text"] = (block.get("text") or "") + delta.get("text", "")
                        marks.token(answer=True)
                    elif delta.get("type") == "thinking_delta":
                        block["thinking"] = (block.get("thinking") or "") + delta.get("thinking", "")
                        marks.token(answer=False)
                elif kind == "message_delta":
                    message["stop_reason"] = event.delta.stop_reason
                    message["stop_sequence"] = event.delta.stop_sequence
                    usage.update({k: v for k, v in event.usage.model_dump().items() if v is not None})
        finally:
            await stream.close()
        message["content"] = [blocks[i] for i in sorted(blocks)]
        message["usage"] = usage
        return message, marks.timing()

    def _scrub(self, text: str) -> str:
        if self._api_key and len(self._api_key) >= 8:
            text = text.replace(self._api_key, "***")
        return text

    def _explain(self, exc: anthropic.APIError, request: ChatRequest) -> EndpointError:
        """An error that says what to change; never the key, never the request headers."""
        model, env = self.model, self.model.api_key_env
        conf = f"conf/model/{model.name}.yaml"
        where = f"{self.base_url} (model '{model.name}', model id '{request.model_id}')"
        retries = f"after up to {model.max_retries} retries (model.max_retries)"
        if isinstance(exc, anthropic.APITimeoutError):  # a subclass of APIConnectionError: test it first
            return RequestFailed(
                f"no answer from {where} within model.request_timeout_s={model.request_timeout_s:g} s, "
                f"{retries}; raise the timeout or lower model.concurrency.", kind="timeout")
        if isinstance(exc, anthropic.APIConnectionError):
            return RequestFailed(
                f"cannot reach {self.base_url} for model '{model.name}' ({type(exc).__name__}), {retries}; "
                f"is the network up and model.base_url right?", kind="connection")
        if not isinstance(exc, anthropic.APIStatusError):
            return RequestFailed(self._scrub(f"{where} sent an unusable answer: {type(exc).__name__}: "
                                             f"{str(exc)[:300]}"), kind="bad_response")
        code = exc.status_code
        said = self._scrub(_error_message(exc))
        kind = getattr(exc, "type", None)  # error.type of the body (SDK >= 2: attribute on the error)
        answered = f"{where} answered {code}{f' {kind}' if kind else ''}: {said}"
        if code == 401:
            return EndpointError(
                f"{where} rejected the API key (401 authentication_error): check the key in the environment "
                f"variable {env} (named by model.api_key_env in {conf}).")
        if code == 402:
            return EndpointError(f"{answered} -- the account behind {env} cannot pay; add credit or use another key.")
        if code == 403:
            return EndpointError(
                f"{answered} -- the key in {env} may not use model id '{request.model_id}'; check the key's "
                f"workspace permissions or model.model_id in {conf}.")
        if code == 404:
            return EndpointError(
                f"{answered} -- no model id '{request.model_id}' at {self.base_url}; check model.model_id "
                f"and model.base_url in {conf}.")
        if code == 429:
            if getattr(exc, "error_code", None) in _FATAL_429_CODES:
                return EndpointError(f"{answered} -- a spend limit; raise it in the Anthropic console.")
            return RequestFailed(f"{answered} (still rate-limited {retries}); lower model.concurrency.",
                                 kind="rate_limit", status=code)
        if code == 529:
            return RequestFailed(f"{answered} (still overloaded {retries}).", kind="overloaded", status=code)
        if code == 408:
            return RequestFailed(f"{answered} ({retries}).", kind="timeout", status=code)
        if code >= 500:
            return RequestFailed(f"{answered} ({retries}).", kind="server_error", status=code)
        if code == 400 and _CONFIG_400.search(said) and not _PROMPT_400.search(said):
            return EndpointError(
                f"{answered} -- this applies to every request: check model.model_id, model.generation and "
                f"model.thinking in {conf}.")
        return RequestFailed(answered, kind="bad_request", status=code)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _error_message(exc: anthropic.APIStatusError) -> str:
    """error.message of the documented error body {"type": "error", "error": {"type", "message"}}."""
    if getattr(exc, "api_message", None):
        return str(exc.api_message)[:500]
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        message = (error.get("message") if isinstance(error, dict) else error) or body.get("message")
        if message:
            return str(message)[:500]
    return str(exc.message)[:500]
