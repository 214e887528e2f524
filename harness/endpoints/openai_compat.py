"""Any OpenAI-compatible chat endpoint (DeepSeek, OpenAI, vLLM, llama.cpp, Gemini's and Claude's
compatibility layers), over a lean aiohttp exchange of our own (harness.endpoints.wire).

The HTTP exchange is wire's (the openai SDK's `post` cost ~0.7 ms of CPU per request on top of
aiohttp's and capped throughput at concurrency 256: see wire's docstring); retries are ours
(tenacity, `RetryBudget`): every attempt holds a concurrency slot only while it is on the wire, and
every wait between attempts happens without one, so a request waiting out a 429 does not keep the
slot from a request the server would accept. We add bounded, adaptive concurrency, a retry of answers
the SDK accepts but we cannot use, usage parsing and checking across the providers' dialects
(openai_format, usage_checks), reasoning text kept apart, and errors that say what to do.

What happens to each failure, after up to `model.max_retries` retries:

    answer                        retried (by us)          then raises
    ----------------------------  -----------------------  ---------------------------------------
    401 bad key                   no                       EndpointError (fatal: fix the key)
    402 no balance (DeepSeek)     no                       EndpointError (fatal: top up)
    403 forbidden                 no                       EndpointError (fatal: key/model access)
    404 unknown model / wrong URL no                       EndpointError (fatal: model_id/base_url)
    other 4xx (405, 415, ...)     no                       EndpointError (fatal: wrong endpoint)
    3xx redirect                  no (not followed)        EndpointError (fatal: fix model.base_url)
    400 / 413 / 422 refused       no                       RequestFailed kind="bad_request"
    408                           yes                      RequestFailed kind="timeout"
    409                           yes                      RequestFailed kind="conflict"
    429 rate limit                yes (+ limiter halves),  RequestFailed kind="rate_limit" once
                                  waits without a slot,    model.rate_limit_patience_s has passed
                                  for rate_limit_patience_s
    503 / 529 overloaded          as 429                   RequestFailed kind="server_error"
    other 5xx                     yes                      RequestFailed kind="server_error"
    connection refused / reset    yes                      RequestFailed kind="connection"; but
                                                           EndpointError (fatal) while the server
                                                           has never answered this endpoint at all
    no answer in request_timeout  yes                      RequestFailed kind="timeout"
    200, body not JSON            yes                      RequestFailed kind="malformed"
    200, body or stream too long  yes                      RequestFailed kind="malformed" (wire's caps)
    200, "choices": []            yes                      RequestFailed kind="empty_choices"
    200, content null or empty    yes                      RequestFailed kind="empty" (unless cut
                                                           off by max_tokens, or reasoning explains it)
    200, impossible usage         -                        the answer kept, usage "suspect", billed at
                                                           the request's worst case (usage_checks)

This follows the providers' error tables: DeepSeek retries 429 (rate limit), 500 (server error)
and 503 (server overloaded) and not 400 / 401 / 402 / 422; OpenAI retries 429 and 5xx; Anthropic's
OpenAI-compatible API adds 529 (overloaded); the same statuses the openai SDK's own `_should_retry`
retries (408, 409, 429, >= 500). Up to model.max_retries more attempts, one HTTP request each; waits: what
the server asks (retry-after-ms / Retry-After, up to 60 s), else 0.5 s doubling to 8 s with jitter
(`retry_backoff_s` for unusable 200s). Keep-alive blank lines before the JSON (DeepSeek sends them
while a long non-streaming answer is generated) are whitespace to the JSON parser, and each one
resets the read timeout: request_timeout_s bounds the silence, not the whole answer.

Slow-down answers (429, 503, 529) are not failures: the request gives its slot back, waits (what
the server asked, at least 0.05 s doubling to 8 s), queues for a slot again under the lowered
limit, and tries again, until model.rate_limit_patience_s. bench/bench_rate_limited.py (a server that
takes 4 at once, 50 ms per answer, 120 requests): concurrency 64 takes 1.25x the time of
concurrency 4 (the SDK's retries inside the slot took 2.6x).

Concurrency: every attempt holds a slot of an `AdaptiveLimiter` (harness.endpoints.concurrency)
while it is on the wire, so the slots bound the requests the server sees at once. The limiter starts
at model.concurrency and sees every HTTP status wire receives: a 429, 503 or 529 calls
`limiter.on_rate_limited()` (halve, once per round trip), a 2xx/3xx `limiter.on_success()` (grow back
by one slot every `limit` successes; after a slow-down, every PROBE_ROUNDS x `limit` until past
where it came).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception

from harness.config import ModelConfig
from harness.endpoints.base import ChatRequest, Completion, EndpointError, RequestFailed
from harness.endpoints.concurrency import AdaptiveLimiter
from harness.endpoints.openai_stream import (StreamCut, StreamMalformed, StreamStalled, StreamTimedOut, StreamTiming,
                                             read_stream)
from harness.endpoints.retries import BadAnswer, Interrupted, RetryBudget, is_slow_down, retryable, tries_said
from harness.endpoints.usage_checks import is_blank
from harness.endpoints.wire import AnswerRefused, HttpStatusError, JsonWire, NotAStream, WireFailure
from harness.endpoints.openai_format import build_request_kwargs, parse_chat_completion, with_timing


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


# Statuses the openai SDK retries (openai._base_client._should_retry): 408, 409, 429 and >= 500.
_PER_REQUEST_KIND = {400: "bad_request", 413: "bad_request", 422: "bad_request",
                     408: "timeout", 409: "conflict", 429: "rate_limit"}


# What a server may send for one answer grows with what the request allows (max_tokens), not with what
# the server claims. A whole answer: 64 bytes per token (a token is a few bytes of text, JSON escapes
# at most ~6x), between 1 and 32 MiB (parsed JSON takes up to ~30x its bytes in memory). A stream:
# 1 KiB per token (an event per token is ~150-300 bytes), at least 64 MiB, read a batch at a time.
BODY_BYTES_PER_TOKEN, MIN_BODY_BYTES, MAX_BODY_BYTES = 64, 1 << 20, 32 << 20
STREAM_BYTES_PER_TOKEN, MIN_STREAM_BYTES = 1024, 64 << 20
DEFAULT_MAX_TOKENS_FOR_CAP = 32768  # a request without max_tokens: the caps assume this many


class OpenAICompatEndpoint:
    """Chat completions over wire's aiohttp exchange, at most `limiter.limit` (<= model.concurrency) in flight."""

    def __init__(self, model: ModelConfig, base_url: str, identity: str | None = None, *,
                 retry_backoff_s: float = 0.5, limiter: AdaptiveLimiter | None = None):
        self.model = model
        self.base_url = base_url
        self.identity = identity or base_url
        self._api_key = resolve_api_key(model)
        self._wire: JsonWire | None = None
        # Waiters are futures of the loop that awaits them, so the limiter may be made here.
        self.limiter = limiter or AdaptiveLimiter(model.concurrency)
        self.retry_backoff_s = retry_backoff_s  # first wait before retrying a malformed/empty answer
        self._answered = False  # has the server ever answered (any HTTP status)?

    def _ensure_wire(self) -> JsonWire:
        if self._wire is None:
            self._wire = JsonWire(f"{self.base_url.rstrip('/')}/chat/completions", self._api_key,
                                  connect_timeout_s=self.model.connect_timeout_s,
                                  read_timeout_s=self.model.request_timeout_s, on_status=self._on_status)
        return self._wire

    def _on_status(self, status: int) -> None:
        """Every HTTP status received, whatever happens to the answer next."""
        self._answered = True
        self.limiter.observe(status, f"{self.base_url} (model '{self.model.name}')")

    async def complete(self, request: ChatRequest, doc_key: str | None = None) -> Completion:
        """One request, retried in our own layer (the SDK's retries are off): every attempt holds a
        concurrency slot only while it is on the wire, and every wait between attempts (backoff,
        Retry-After, a slow-down round) happens without one, so the limiter converges to what the
        server accepts instead of filling the slots with requests that are only waiting."""
        wire = self._ensure_wire()
        body = _request_body(build_request_kwargs(self.model, request), self.model.stream)
        budget = RetryBudget(self.model.max_retries, self.model.rate_limit_patience_s, self.retry_backoff_s)
        outcome: dict[str, Any] | BaseException
        try:  # the first attempt without tenacity's machinery (the common case pays nothing for it)
            answer, timing, latency = await self._in_a_slot(wire, body)
            outcome = answer
        except (BadAnswer, Interrupted, HttpStatusError, WireFailure) as exc:
            outcome = exc
        if isinstance(outcome, BaseException) and retryable(outcome):
            budget.book(outcome)
            if not budget.exhausted(outcome):
                await asyncio.sleep(budget.next_wait)  # without a slot
                try:
                    async for attempt in AsyncRetrying(retry=retry_if_exception(retryable), stop=budget.stop,
                                                       wait=budget.wait, reraise=True):
                        with attempt:
                            answer, timing, latency = await self._in_a_slot(wire, body)
                    outcome = answer
                except (BadAnswer, Interrupted, HttpStatusError, WireFailure) as exc:
                    outcome = exc
        if isinstance(outcome, BaseException):
            failure = self._failure(outcome, request, budget)
            raise _with_message(failure, wire.scrub(str(failure)))
        self.limiter.note_latency(latency)
        return with_timing(parse_chat_completion(outcome, latency, request.stop, request), timing)

    async def _in_a_slot(self, wire: JsonWire, body: dict[str, Any]) -> tuple[dict[str, Any], StreamTiming | None, float]:
        """One attempt holding a concurrency slot: (answer, stream timing, seconds on the wire)."""
        async with self.limiter:
            started = time.perf_counter()
            answer, timing = await self._attempt(wire, body)
            return answer, timing, time.perf_counter() - started

    def _failure(self, exc: BaseException, request: ChatRequest, budget: "RetryBudget") -> EndpointError:
        if isinstance(exc, BadAnswer):
            return self._bad_answer(exc, request)
        if isinstance(exc, Interrupted):
            return RequestFailed(f"{self._where(request)}: {exc.detail}; {tries_said(exc.kind, self.model.max_retries)}",
                                 kind=exc.kind)
        if is_slow_down(exc) and budget.patience_spent:
            return self._out_of_patience(self._explain(exc, request), request)  # type: ignore[arg-type]
        return self._explain(exc, request)  # type: ignore[arg-type]

    def _out_of_patience(self, failure: EndpointError | None, request: ChatRequest) -> RequestFailed:
        status = failure.status if isinstance(failure, RequestFailed) else None
        return RequestFailed(
            f"{self._where(request)} kept answering {status} (slow down) for model.rate_limit_patience_s="
            f"{self.model.rate_limit_patience_s:g} s while we waited as asked and lowered concurrency to "
            f"{self.limiter.limit}; raise the patience or lower model.concurrency. Last answer: {failure}",
            kind="rate_limit" if status == 429 else "server_error", status=status)

    async def _attempt(self, wire: JsonWire, body: dict[str, Any]) -> tuple[dict[str, Any], StreamTiming | None]:
        """One HTTP exchange within model.attempt_timeout_s: the answer (and, streamed, its timing), or
        BadAnswer / Interrupted for what another attempt may fix (HttpStatusError / WireFailure from wire)."""
        try:
            if self.model.stream:  # the stream reader's one timer keeps attempt_timeout_s too
                return await self._streamed(wire, body)
            async with asyncio.timeout(self.model.attempt_timeout_s):  # no task per request, unlike wait_for
                return await self._whole(wire, body)
        except (TimeoutError, StreamTimedOut):
            raise Interrupted("timeout", f"the answer took longer than model.attempt_timeout_s="
                                          f"{self.model.attempt_timeout_s:g} s") from None
        except AnswerRefused as exc:
            raise BadAnswer("malformed", str(exc)) from None

    async def _whole(self, wire: JsonWire, body: dict[str, Any], raw: bytes | None = None) -> tuple[dict[str, Any], None]:
        if raw is None:
            cap = min(max(MIN_BODY_BYTES, _max_tokens(body) * BODY_BYTES_PER_TOKEN), MAX_BODY_BYTES)
            raw = await wire.post(body, cap)
        try:
            answer = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested past the parser, a 5,000-digit int
            raise BadAnswer("malformed", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        check_answer(answer)
        return answer, None

    async def _streamed(self, wire: JsonWire, body: dict[str, Any]) -> tuple[dict[str, Any], StreamTiming]:
        cap = max(MIN_STREAM_BYTES, _max_tokens(body) * STREAM_BYTES_PER_TOKEN)
        sent = time.perf_counter()
        try:
            async with contextlib.aclosing(wire.stream_events(body, cap)) as events:
                answer, timing = await read_stream(events, sent, idle_timeout_s=self.model.idle_timeout_s,
                                                   first_token_timeout_s=self.model.first_token_timeout_s,
                                                   total_timeout_s=self.model.attempt_timeout_s)
        except StreamStalled as exc:
            raise Interrupted("timeout", f"the stream stalled: {exc} (model.first_token_timeout_s / "
                                          f"model.idle_timeout_s)") from None
        except StreamMalformed as exc:
            raise BadAnswer("malformed", str(exc)) from None
        except StreamCut as exc:
            raise Interrupted("connection", f"{exc}, after the server had started answering") from None
        except NotAStream as answer:  # the server ignored stream=true: read as it came, without timing
            return await self._whole(wire, body, answer.raw)
        except WireFailure as exc:
            if exc.kind == "cut" and self._answered:
                raise Interrupted("connection", f"the connection was cut mid-answer ({exc.detail}) after the "
                                                 f"server had started answering") from None
            raise
        check_answer(answer)
        return answer, timing

    def _where(self, request: ChatRequest) -> str:
        return f"{self.base_url} (model '{self.model.name}', served id '{request.model_id}')"

    def _bad_answer(self, exc: BadAnswer, request: ChatRequest) -> RequestFailed:
        what = {"malformed": "an answer it could not read", "empty": "an empty answer"}.get(exc.kind, "no choices")
        return RequestFailed(
            f"{self._where(request)} answered 200 with {what} on every try, after up to "
            f"{self.model.max_retries} retries (model.max_retries): {exc.detail}",
            kind=exc.kind, status=200)

    def _explain(self, exc: HttpStatusError | WireFailure, request: ChatRequest) -> EndpointError:
        """An error message that says what to change; never the key, never the request headers.
        EndpointError (fatal) for what the configuration must fix, RequestFailed for the rest."""
        where = self._where(request)
        retries = tries_said(exc.kind if isinstance(exc, WireFailure) else "status", self.model.max_retries)
        if isinstance(exc, WireFailure):
            if exc.kind == "broken":
                return RequestFailed(f"{where} answered with broken HTTP ({exc.detail}), {retries}: the server or "
                                     f"a proxy in between is at fault, not the URL.", kind="malformed")
            if exc.kind == "timeout":
                return RequestFailed(
                    f"no answer from {where} within model.request_timeout_s={self.model.request_timeout_s:g} s, "
                    f"{retries} (a timed-out request is tried once more); raise the timeout, stream (model.stream=true), or lower model.concurrency.",
                    kind="timeout")
            if exc.kind == "cut" and self._answered:
                return RequestFailed(
                    f"{where} accepted the connection but cut it before the answer was complete "
                    f"({exc.detail}), {retries}: the server is up; a proxy or server timeout, or a "
                    f"crash mid-answer, is likelier than a wrong URL.", kind="connection")
            message = (f"cannot reach the endpoint at {self.base_url} for model '{self.model.name}' "
                       f"({exc.detail}), {retries}; is the server up and the URL right (model.base_url)?")
            if not self._answered:  # nothing ever came back: a wrong URL or a server that is down
                return EndpointError(message)
            return RequestFailed(message, kind="connection")
        code = exc.status_code
        said = f"{where} answered {code}: {exc.message}"
        if code < 400:
            return EndpointError(f"{where} answered {code}, a redirect to {exc.location or 'nowhere'}; redirects are not followed "
                                 f"(the request carries the API key): set model.base_url to the address the "
                                 f"API really answers at.")
        if code == 401:
            return EndpointError(f"{where} rejected the API key (401); check the key in {self.model.api_key_env}.")
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
            return RequestFailed(f"{said} (still failing {retries})", kind=_PER_REQUEST_KIND[code], status=code)
        if code in _PER_REQUEST_KIND:
            return RequestFailed(f"{said}; the server refused this request (not retried).",
                                 kind=_PER_REQUEST_KIND[code], status=code)
        return EndpointError(f"{said}; not a status a chat completions endpoint should answer: check "
                             f"model.base_url ({self.base_url}).")

    async def aclose(self) -> None:
        if self._wire is not None:
            await self._wire.aclose()
            self._wire = None


def _max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_tokens") or body.get("max_completion_tokens")
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_TOKENS_FOR_CAP


def _with_message(failure: EndpointError, message: str) -> EndpointError:
    """The same failure with another message (the key scrubbed out of what a server echoed)."""
    if message == str(failure):
        return failure
    if isinstance(failure, RequestFailed):
        return RequestFailed(message, kind=failure.kind, status=failure.status)
    return EndpointError(message)


def _request_body(kwargs: dict[str, Any], stream: bool) -> dict[str, Any]:
    """The JSON body, built once per request: the arguments with extra_body merged in (as the SDK does)."""
    body = {k: v for k, v in kwargs.items() if k != "extra_body"}
    body.update(kwargs.get("extra_body") or {})
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def check_answer(answer: Any) -> None:
    """BadAnswer for a 200 we cannot use: not a chat.completion, no choices, or an empty answer that
    is neither cut off by max_tokens nor explained by reasoning (the server failing to answer, not the
    model answering wrongly: retried, then an error)."""
    if not isinstance(answer, dict) or answer.get("object") not in (None, "chat.completion"):
        raise BadAnswer("malformed", f"not a chat.completion: {str(answer)[:200]!r}")
    if answer.get("error"):
        raise BadAnswer("malformed", f"an error in a 200 answer: {str(answer['error'])[:300]}")
    if not answer.get("choices"):
        raise BadAnswer("empty_choices", f"no choices: {str(answer)[:300]}")
    choice = answer["choices"][0] if isinstance(answer["choices"], list) else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise BadAnswer("malformed", f"a choice without a message: {str(answer)[:200]!r}")
    content = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if not isinstance(content, (str, type(None))) or not isinstance(reasoning, (str, type(None))) \
            or not isinstance(choice.get("finish_reason"), (str, type(None))):
        raise BadAnswer("malformed", f"content, reasoning or finish_reason that is not text: {str(choice)[:200]!r}")
    if is_blank(content) and choice.get("finish_reason") != "length" and is_blank(reasoning):
        raise BadAnswer("empty", f"an empty answer (content {content!r}, finish_reason {choice.get('finish_reason')!r})")
