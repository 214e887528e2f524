"""Any OpenAI-compatible chat endpoint (DeepSeek, OpenAI, vLLM, llama.cpp, Gemini's and Claude's
compatibility layers) through the official `openai` SDK.

The SDK does HTTP, timeouts and the retries of HTTP failures (exponential backoff 0.5 s .. 8 s with
jitter, or exactly what `retry-after-ms` / `Retry-After` says, up to 2 minutes); we add bounded,
adaptive concurrency, a retry of answers the SDK accepts but we cannot use, usage parsing across the
providers' dialects, reasoning text kept apart, and errors that say what to do.

What happens to each failure, after up to `model.max_retries` retries:

    answer                        retried by               then raises
    ----------------------------  -----------------------  ---------------------------------------
    401 bad key                   no                       EndpointError (fatal: fix the key)
    402 no balance (DeepSeek)     no                       EndpointError (fatal: top up)
    403 forbidden                 no                       EndpointError (fatal: key/model access)
    404 unknown model / wrong URL no                       EndpointError (fatal: model_id/base_url)
    other 4xx (405, 415, ...)     no                       EndpointError (fatal: wrong endpoint)
    400 / 413 / 422 refused       no                       RequestFailed kind="bad_request"
    408                           SDK                      RequestFailed kind="timeout"
    409                           SDK                      RequestFailed kind="conflict"
    429 rate limit                SDK (+ limiter halves),  RequestFailed kind="rate_limit" once
                                  then ours: rounds for    model.rate_limit_patience_s has passed
                                  rate_limit_patience_s
    503 / 529 overloaded          as 429                   RequestFailed kind="server_error"
    other 5xx                     SDK                      RequestFailed kind="server_error"
    connection refused / reset    SDK                      RequestFailed kind="connection"; but
                                                           EndpointError (fatal) while the server
                                                           has never answered this endpoint at all
    no answer in request_timeout  SDK                      RequestFailed kind="timeout"
    200, body not JSON            ours (tenacity)          RequestFailed kind="malformed"
    200, "choices": []            ours (tenacity)          RequestFailed kind="empty_choices"
    200, content null or empty    ours (tenacity)          RequestFailed kind="empty" (unless cut
                                                           off by max_tokens, or reasoning explains it)
    200, impossible usage         -                        the answer kept, usage "suspect", billed at
                                                           the request's worst case (usage_checks)

This follows the providers' error tables: DeepSeek retries 429 (rate limit), 500 (server error)
and 503 (server overloaded) and not 400 / 401 / 402 / 422; OpenAI retries 429 and 5xx;
Anthropic's OpenAI-compatible API adds 529 (overloaded). The SDK's `_should_retry` retries 408,
409, 429 and every status >= 500, so 529 needs nothing of ours (a server's `x-should-retry`
header overrides that, and a `Retry-After` over 2 minutes means no retry at all). The SDK does not look at
a 200's body, so a truncated JSON or an empty `choices` would fail at once: we retry those with
tenacity, up to model.max_retries more times, backoff `retry_backoff_s` doubling with jitter. Each
of those attempts has its own SDK retry budget, so one sample makes at most
(max_retries + 1)^2 HTTP requests. Keep-alive blank lines before the JSON (DeepSeek sends them
while a long non-streaming answer is generated) are whitespace to the JSON parser, and each one
resets httpx's read timeout: request_timeout_s bounds the silence, not the whole answer.

Slow-down answers (429, 503, 529) are not failures: when the SDK's retries of one are spent, the
request gives its slot back, waits (what the server asked, at least a doubling backoff), queues for a
slot again under the lowered limit, and tries another round, until model.rate_limit_patience_s.

Concurrency: every request holds a slot of an `AdaptiveLimiter` (harness.endpoints.concurrency)
during each round of SDK attempts, so the slots bound the requests the server sees at once. The limiter starts at model.concurrency and must see every 429, including
the ones the SDK retries silently; the SDK hands no callback for those, but the httpx client it
sends through does: the endpoint gives the SDK an `openai.DefaultAioHttpClient` (an
`httpx2.AsyncClient` over aiohttp; this SDK is built on the `httpx2` fork) with an async
`response` event hook, which is called once per HTTP response, retries included, before the SDK
decides to retry. A 429, 503 or 529 there calls `limiter.on_rate_limited()` (halve, once per round
trip), a 2xx/3xx `limiter.on_success()` (grow back by one slot every `limit` successes). This keeps
the SDK's retry logic (Retry-After, retry-after-ms, x-should-retry, idempotency keys).

Speed (bench/throughput.py): requests go through the SDK's low-level `post` with the JSON body as
built and the raw answer parsed here, skipping `chat.completions.create`'s per-message type
introspection and pydantic model; and over aiohttp, whose pool does not scan every connection with
system calls per request as httpx's does. Both cost CPU per request that, under one GIL, capped
throughput at a third to a half of the ideal at concurrency 64.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import time
from typing import Any

import aiohttp
import httpx2
import openai
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from harness.config import ModelConfig
from harness.endpoints.base import ChatRequest, Completion, EndpointError, RequestFailed
from harness.endpoints.concurrency import SLOW_DOWN, AdaptiveLimiter
from harness.endpoints.openai_format import (  # noqa: F401 (the dialect's parsers, used here and re-exported)
    _get, build_request_kwargs, parse_chat_completion, parse_usage, read_usage, split_reasoning, truncate_at_stop)

log = logging.getLogger(__name__)



def resolve_api_key(model: ModelConfig) -> str:
    """The key from the environment variable the model config names; errors name that variable."""
    if not model.api_key_env or model.provider == "replay":
        return "not-needed"  # local servers (llama.cpp, vLLM without --api-key) accept any key
    key = os.environ.get(model.api_key_env, "").strip()
    if key:
        return key
    if model.api_key_optional:
        return "not-needed"
    raise EndpointError(
        f"model '{model.name}' needs an API key in the environment variable {model.api_key_env}, "
        f"which is not set. Export it (export {model.api_key_env}=...) or pick another model; "
        f"the variable is named by api_key_env in conf/model/{model.name}.yaml."
    )


# Statuses the SDK retries (see openai._base_client._should_retry): 408, 409, 429 and >= 500.
_PER_REQUEST_KIND = {400: "bad_request", 413: "bad_request", 422: "bad_request",
                     408: "timeout", 409: "conflict", 429: "rate_limit"}


class _BadAnswer(Exception):
    """A 200 whose body we cannot use; retried by our tenacity layer, then a RequestFailed."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class OpenAICompatEndpoint:
    """Chat completions over the OpenAI SDK, at most `limiter.limit` (<= model.concurrency) in flight."""

    def __init__(self, model: ModelConfig, base_url: str, identity: str | None = None, *,
                 retry_backoff_s: float = 0.5, limiter: AdaptiveLimiter | None = None):
        self.model = model
        self.base_url = base_url
        self.identity = identity or base_url
        self._api_key = resolve_api_key(model)
        self._client: openai.AsyncOpenAI | None = None
        # Waiters are futures of the loop that awaits them, so the limiter may be made here.
        self.limiter = limiter or AdaptiveLimiter(model.concurrency)
        self.retry_backoff_s = retry_backoff_s  # first wait before retrying a malformed/empty answer
        self._answered = False  # has the server ever answered (any HTTP status)?

    def _ensure_client(self) -> openai.AsyncOpenAI:
        # Made inside the running event loop: an async HTTP pool must not outlive its loop.
        if self._client is None:
            # aiohttp as the transport: httpx's own pool scans every pooled connection with system
            # calls on each request and on each close (bench/throughput.py).
            http_client = openai.DefaultAioHttpClient(event_hooks={"response": [self._on_response]})
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                max_retries=self.model.max_retries,
                timeout=self.model.request_timeout_s,
                http_client=http_client,
            )
        return self._client

    async def _on_response(self, response: Any) -> None:
        """httpx response hook: every HTTP response, including those the SDK is about to retry."""
        self._answered = True
        self.limiter.observe(response.status_code, f"{self.base_url} (model '{self.model.name}')")


    async def complete(self, request: ChatRequest, doc_key: str | None = None) -> Completion:
        client = self._ensure_client()
        kwargs = build_request_kwargs(self.model, request)
        body: dict[str, Any] | None = None
        failure: EndpointError | None = None
        first_slow_down: float | None = None
        for slow_down_round in itertools.count():
            wait_s = None
            async with self.limiter:
                started = time.perf_counter()
                try:
                    body = await self._attempt_retrying_bad_answers(client, kwargs)
                except _BadAnswer as exc:
                    failure = self._bad_answer(exc, request)
                except openai.APIStatusError as exc:
                    failure = self._explain(exc, request)
                    if exc.status_code in SLOW_DOWN:
                        wait_s = _slow_down_wait(exc.response.headers, slow_down_round)
                except openai.APIError as exc:
                    failure = self._explain(exc, request)
                latency = time.perf_counter() - started
            if wait_s is None:
                break
            first_slow_down = first_slow_down or time.monotonic()
            if time.monotonic() + wait_s - first_slow_down > self.model.rate_limit_patience_s:
                failure = self._out_of_patience(failure, request)
                break
            failure = None
            await asyncio.sleep(wait_s)  # without a slot: others (fewer, now) keep the server busy
        if failure is not None:
            # Raised outside the except block so the SDK error (whose request carries the key in its
            # headers) is not attached as __context__ for some error reporter to print.
            raise failure
        assert body is not None
        self.limiter.note_latency(latency)
        return parse_chat_completion(body, latency, request.stop, request)

    def _out_of_patience(self, failure: EndpointError | None, request: ChatRequest) -> RequestFailed:
        status = failure.status if isinstance(failure, RequestFailed) else None
        return RequestFailed(
            f"{self._where(request)} kept answering {status} (slow down) for model.rate_limit_patience_s="
            f"{self.model.rate_limit_patience_s:g} s while we waited as asked and lowered concurrency to "
            f"{self.limiter.limit}; raise the patience or lower model.concurrency. Last answer: {failure}",
            kind="rate_limit" if status == 429 else "server_error", status=status)

    async def _attempt_retrying_bad_answers(self, client: openai.AsyncOpenAI, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The first attempt directly (the common case pays nothing for the retry machinery); after a
        malformed or empty answer, up to model.max_retries more through tenacity."""
        try:
            return await self._attempt(client, kwargs)
        except _BadAnswer:
            if self.model.max_retries == 0:
                raise
        b = self.retry_backoff_s
        await asyncio.sleep(b)  # the first retry's wait; tenacity's first attempt is immediate
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.model.max_retries),
            wait=wait_exponential_jitter(multiplier=2 * b, max=b * 16, jitter=b),
            retry=retry_if_exception_type(_BadAnswer),
            reraise=True,
        ):
            with attempt:
                return await self._attempt(client, kwargs)
        raise AssertionError("unreachable: tenacity re-raises the last _BadAnswer")

    @staticmethod
    async def _attempt(client: openai.AsyncOpenAI, kwargs: dict[str, Any]) -> dict[str, Any]:
        """One SDK call (with its own HTTP retries); the body, or _BadAnswer for an unusable 200.

        Posted through the SDK's low-level `post` with the JSON body as built, and the raw response
        parsed here: `chat.completions.create` re-walks every message through the SDK's type
        introspection and builds a pydantic model we would only dump again, which cost ~2-5 ms of CPU
        per request (bench/throughput.py) and capped throughput at a third of the ideal."""
        body = {k: v for k, v in kwargs.items() if k != "extra_body"}
        body.update(kwargs.get("extra_body") or {})
        response = await client.post("/chat/completions", cast_to=httpx2.Response, body=body,
                                     options={"security": {"bearer_auth": True}})
        try:
            answer = json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _BadAnswer("malformed", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if not isinstance(answer, dict) or answer.get("object") not in (None, "chat.completion"):
            raise _BadAnswer("malformed", f"not a chat.completion: {str(answer)[:200]!r}")
        if not answer.get("choices"):
            raise _BadAnswer("empty_choices", f"no choices: {str(answer)[:300]}")
        choice = answer["choices"][0] if isinstance(answer["choices"], list) else None
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise _BadAnswer("malformed", f"a choice without a message: {str(answer)[:200]!r}")
        content = message.get("content")
        # An empty answer that is neither cut off by max_tokens nor explained by reasoning is the
        # server failing to answer (not the model answering wrongly): retried, then an error.
        if not (content.strip() if isinstance(content, str) else content) and choice.get("finish_reason") != "length" \
                and not (message.get("reasoning_content") or message.get("reasoning")):
            raise _BadAnswer("empty", f"an empty answer (content {content!r}, finish_reason "
                                      f"{choice.get('finish_reason')!r})")
        return answer

    def _where(self, request: ChatRequest) -> str:
        return f"{self.base_url} (model '{self.model.name}', served id '{request.model_id}')"

    def _bad_answer(self, exc: _BadAnswer, request: ChatRequest) -> RequestFailed:
        what = "an answer that is not JSON" if exc.kind == "malformed" else "no choices"
        return RequestFailed(
            f"{self._where(request)} answered 200 with {what} on every try, after up to "
            f"{self.model.max_retries} retries (model.max_retries): {exc.detail}",
            kind=exc.kind, status=200)

    def _explain(self, exc: openai.APIError, request: ChatRequest) -> EndpointError:
        """An error message that says what to change; never the key, never the request headers.
        EndpointError (fatal) for what the configuration must fix, RequestFailed for the rest."""
        where = self._where(request)
        retries = f"after up to {self.model.max_retries} retries (model.max_retries)"
        if isinstance(exc, openai.AuthenticationError):
            return EndpointError(f"{where} rejected the API key (401); check the key in {self.model.api_key_env}.")
        if isinstance(exc, openai.APITimeoutError) and _connection_failure(exc):
            exc = openai.APIConnectionError(request=exc.request)  # the transport mislabels these
        if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError: test it first
            return RequestFailed(
                f"no answer from {where} within model.request_timeout_s={self.model.request_timeout_s:g} s, "
                f"{retries}; raise the timeout or lower model.concurrency.", kind="timeout")
        if isinstance(exc, openai.APIConnectionError):
            message = (f"cannot reach the endpoint at {self.base_url} for model '{self.model.name}' "
                       f"({type(exc).__name__}), {retries}; is the server up and the URL right (model.base_url)?")
            if not self._answered:  # nothing ever came back: a wrong URL or a server that is down
                return EndpointError(message)
            return RequestFailed(message, kind="connection")
        if isinstance(exc, openai.APIResponseValidationError):
            return RequestFailed(f"{where} answered a body the SDK could not validate: {str(exc)[:300]}",
                                 kind="malformed", status=exc.status_code)
        if isinstance(exc, openai.APIStatusError):
            code = exc.status_code
            said = f"{where} answered {code}: {_error_message(exc)}"
            if code == 402:
                return EndpointError(f"{said}; the account is out of credit (DeepSeek: insufficient "
                                     f"balance): top it up, or pick another model.")
            if code == 403:
                return EndpointError(f"{said}; this key may not use this model or endpoint (permissions, "
                                     f"organisation or region): check the key in {self.model.api_key_env} "
                                     f"and model.model_id.")
            if code == 404:
                return EndpointError(f"{said}; no such model or path: check model.model_id "
                                     f"('{request.model_id}') against the provider's model list, and that "
                                     f"model.base_url ({self.base_url}) is the API root (often ending in /v1).")
            if code >= 500:
                return RequestFailed(f"{said} (still failing {retries})", kind="server_error", status=code)
            if code in (408, 409, 429):
                return RequestFailed(f"{said} (still failing {retries})", kind=_PER_REQUEST_KIND[code],
                                     status=code)
            if code in _PER_REQUEST_KIND:
                return RequestFailed(f"{said}; the server refused this request (not retried).",
                                     kind=_PER_REQUEST_KIND[code], status=code)
            return EndpointError(f"{said}; not a status a chat completions endpoint should answer: check "
                                 f"model.base_url ({self.base_url}).")
        return EndpointError(f"{where} failed: {type(exc).__name__}: {str(exc)[:300]}")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _connection_failure(exc: BaseException) -> bool:
    """The aiohttp transport (vendored httpx_aiohttp) reports a refused or dropped connection as a
    connect *timeout*; its cause says what really happened."""
    seen = exc
    while seen is not None:
        if isinstance(seen, (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError,
                             aiohttp.ClientOSError)) and not isinstance(seen, aiohttp.ServerTimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _slow_down_wait(headers: Any, attempt: int, backoff_s: float = 0.5) -> float:
    """How long to wait before asking again: at least what the server asks (retry-after-ms, or
    Retry-After in seconds), and at least exponential backoff with jitter (the SDK's 0.5 s doubling,
    capped at 8 s), so a server that asks for very short waits is not hammered."""
    asked = 0.0
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                asked = min(max(float(value) * scale, 0.0), 60.0)
                break
            except ValueError:
                pass
    return max(asked, min(backoff_s * 2 ** attempt, 8.0) * (0.75 + 0.5 * random.random()))


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = _get(body, "error", "message") or body.get("message") or body.get("error")
        if message:
            return str(message)[:500]
    return str(exc.message)[:500]

