"""Claude through Anthropic's own Messages API (POST /v1/messages) with the official `anthropic` SDK.

Why not the OpenAI compatibility layer: the native API reports prompt-cache reads and writes
(`cache_read_input_tokens`, `cache_creation_input_tokens`), returns thinking as its own content
blocks, and takes the thinking / effort settings the compatibility layer cannot express.

The SDK does HTTP, timeouts, the event stream's format and error types; its own retries are off.
Retries are ours (harness.endpoints.retries, as for the OpenAI-compatible path): 408 / 409 / 429 /
5xx including 529 overloaded, dropped connections, stalled streams; waits honour `retry-after-ms` /
`retry-after`; 400 / 401 / 403 / 404 / 413 / 422 and spend-limit 429s are not retried. Every attempt
holds a concurrency slot only while it is on the wire: a request waiting out a 429 or 529 holds none.
We add the mapping from our OpenAI-style ChatRequest, and errors that say what to do (fatal
EndpointError for the configuration's faults, RequestFailed for one request's). Documented shapes: https://platform.claude.com/docs/en/api/messages and
https://platform.claude.com/docs/en/api/errors.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import anthropic
from tenacity import AsyncRetrying, retry_if_exception

from harness.config import ModelConfig
from harness.endpoints.base import ChatRequest, Completion, EndpointError, RequestFailed
from harness.endpoints.concurrency import AdaptiveLimiter
from harness.endpoints.anthropic_format import build_message_kwargs, normalize_base_url, parse_message
from harness.endpoints.openai_compat import resolve_api_key
from harness.endpoints.openai_format import with_timing
from harness.endpoints.openai_stream import StreamStalled, StreamTiming, TokenMarks
from harness.endpoints.retries import Interrupted, RetryBudget, is_slow_down, retryable, tries_said

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


class AnthropicEndpoint:
    """Messages API calls over the anthropic SDK with at most `model.concurrency` requests in flight."""

    def __init__(self, model: ModelConfig, base_url: str | None, identity: str | None = None):
        self.model = model
        self.base_url = normalize_base_url(base_url or model.base_url)
        self.identity = identity or self.base_url
        self._api_key = resolve_api_key(model)
        self._client: anthropic.AsyncAnthropic | None = None
        # Adaptive like the OpenAI path: every 429 / 529 halves it.
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
                max_retries=0,  # retries are ours (complete): waits must not hold a slot
                timeout=self.model.request_timeout_s,
                http_client=anthropic.DefaultAsyncHttpxClient(event_hooks={"response": [self._on_response]}),
            )
        return self._client

    async def _on_response(self, response: Any) -> None:
        """httpx response hook: every HTTP response, whatever happens to it next."""
        self.limiter.observe(response.status_code, f"{self.base_url} (model '{self.model.name}')")

    async def complete(self, request: ChatRequest, doc_key: str | None = None) -> Completion:
        """One request, retried in our layer (the SDK's retries are off): each attempt holds a slot only
        while on the wire; waits (backoff, Retry-After, slow-down rounds) happen without one."""
        kwargs = build_message_kwargs(self.model, request)  # config errors before any request
        client = self._ensure_client()
        budget = RetryBudget(self.model.max_retries, self.model.rate_limit_patience_s, 0.5)
        failure: EndpointError | None = None
        try:
            async for attempt in AsyncRetrying(retry=retry_if_exception(_retryable), stop=budget.stop,
                                               wait=budget.wait, reraise=True):
                with attempt:
                    body, timing, latency = await self._in_a_slot(client, kwargs)
        except Interrupted as exc:
            failure = RequestFailed(f"{self.base_url} (model '{self.model.name}'): {exc.detail}; "
                                    f"{tries_said(exc.kind, self.model.max_retries)}", kind=exc.kind)
        except anthropic.APIError as exc:
            failure = self._explain(exc, request)
            if is_slow_down(exc) and budget.patience_spent and isinstance(failure, RequestFailed):
                failure = RequestFailed(f"{failure} Waited model.rate_limit_patience_s="
                                        f"{self.model.rate_limit_patience_s:g} s as asked, with concurrency lowered to "
                                        f"{self.limiter.limit}; raise the patience or lower model.concurrency.",
                                        kind=failure.kind, status=failure.status)
        if failure is not None:
            # Raised outside the except block so the SDK error (whose request carries the key in its
            # headers) is not attached as __context__ for some error reporter to print.
            raise failure
        return with_timing(parse_message(body, latency, request.stop, request), timing)

    async def _in_a_slot(self, client: anthropic.AsyncAnthropic, kwargs: dict[str, Any]) -> tuple[dict[str, Any], StreamTiming | None, float]:
        """One attempt holding a concurrency slot: (message, stream timing, seconds on the wire); a
        stall, a timeout or a dropped connection as Interrupted (retried like the SDK would have)."""
        async with self.limiter:
            started = time.perf_counter()
            timing = None
            try:
                if self.model.stream:
                    body, timing = await asyncio.wait_for(self._streamed(client, kwargs), self.model.attempt_timeout_s)
                else:
                    body = (await client.messages.create(**kwargs)).model_dump()
            except (StreamStalled, asyncio.TimeoutError) as exc:
                raise Interrupted("timeout", f"the event stream {exc or 'outlasted model.attempt_timeout_s'} "
                                             f"(model.first_token_timeout_s / model.idle_timeout_s / "
                                             f"model.attempt_timeout_s)") from None
            except anthropic.APITimeoutError:  # a subclass of APIConnectionError: test it first
                raise Interrupted("timeout", f"no answer within model.request_timeout_s="
                                             f"{self.model.request_timeout_s:g} s; raise the timeout or lower "
                                             f"model.concurrency") from None
            except anthropic.APIConnectionError as exc:
                raise Interrupted("connection", f"cannot reach {self.base_url} ({type(exc).__name__}); is the "
                                                f"network up and model.base_url right?") from None
            return body, timing, time.perf_counter() - started

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
        retries = tries_said("status", model.max_retries)  # timeouts and lost connections: _in_a_slot's Interrupted
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


def _retryable(exc: BaseException) -> bool:
    """Ours (retries.retryable), except a 429 that no wait fixes (a spend limit)."""
    if isinstance(exc, anthropic.APIStatusError) and getattr(exc, "error_code", None) in _FATAL_429_CODES:
        return False
    return retryable(exc)


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
