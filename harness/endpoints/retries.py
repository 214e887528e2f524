"""Our retry layer for OpenAI-compatible requests (the SDK's own retries are off): which failures
another attempt may fix, how long to wait before it (what the server asks, else backoff), and when to
give up (model.max_retries; slow-down answers are waited out for model.rate_limit_patience_s instead).

Enters: the exception of a failed attempt. Leaves: tenacity's stop and wait for one request, and the
exceptions an attempt raises for answers the SDK accepts but we cannot use.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from tenacity import RetryCallState

from harness.endpoints.concurrency import SLOW_DOWN
from harness.endpoints.wire import WireFailure


class AttemptFailed(Exception):
    """An attempt another may fix, with the RequestFailed kind it becomes when none is left."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Interrupted(AttemptFailed):
    """An attempt cut short on our side or mid-answer (a stalled stream, the attempt deadline, a
    connection cut after the answer began)."""


class BadAnswer(AttemptFailed):
    """A 200 whose body we cannot use (not JSON, no choices, empty)."""


def slow_down_wait(headers: Any, attempt: int, backoff_s: float = 0.5) -> float:
    """How long to wait before asking again: at least what the server asks (retry-after-ms, or
    Retry-After in seconds), and at least exponential backoff with jitter (the SDK's 0.5 s doubling,
    capped at 8 s), so a server that asks for very short waits is not hammered."""
    asked = _asked_wait(headers) or 0.0
    return max(asked, min(backoff_s * 2 ** attempt, 8.0) * (0.75 + 0.5 * random.random()))


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an error answer: wire.HttpStatusError's, or an SDK's APIStatusError's."""
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def headers_of(exc: BaseException) -> Any:
    """The error answer's headers (ours carry them; the SDKs' errors carry the response)."""
    headers = getattr(exc, "headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    return headers if headers is not None else {}


def is_slow_down(exc: BaseException) -> bool:
    return status_of(exc) in SLOW_DOWN


def retryable(exc: BaseException) -> bool:
    """What another attempt may fix: a slow-down or server error, 408/409, a refused or dropped
    connection or a timeout, an unusable 200. Not: 4xx the configuration or the prompt must fix."""
    if isinstance(exc, (AttemptFailed, WireFailure)):
        return True
    code = status_of(exc)
    return code is not None and (code in (408, 409, 429) or code >= 500)


_HTTP_BACKOFF_S = 0.5  # the SDK's own first backoff for HTTP failures, kept when retries became ours
_SLOW_DOWN_BACKOFF_S = 0.05  # first wait after a slow-down without Retry-After (doubling to 8 s): the limiter paces
# A request that timed out is tried once more, not max_retries more times: a dead request must not hold
# a run for (1 + max_retries) timeouts (with the defaults: 2 x 120 s to first token, streamed).
TIMEOUT_RETRIES = 1


def tries_said(kind: str, max_retries: int) -> str:
    """How many attempts a failure of this kind got, in the words every endpoint's message uses."""
    if kind == "timeout":
        return f"tried {1 + min(TIMEOUT_RETRIES, max_retries)} times"
    return f"after up to {max_retries} retries (model.max_retries)"


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (WireFailure, Interrupted)) and exc.kind == "timeout"


class RetryBudget:
    """tenacity's stop and wait for one request. Slow-down answers (429/503/529) are waited out round
    after round for `patience_s` (they are the server pacing us, not failures); everything else gets
    `max_retries` more attempts (timeouts: TIMEOUT_RETRIES). Waits: what the server asks (retry-after-ms / Retry-After), else
    exponential backoff with jitter (0.5 s doubling to 8 s, as the SDK's; `backoff_s` for unusable
    200s), and for slow-downs never less than that backoff, so a server asking for tiny waits is not
    hammered."""

    def __init__(self, max_retries: int, patience_s: float, backoff_s: float):
        self.max_retries, self.patience_s, self.backoff_s = max_retries, patience_s, backoff_s
        self.retries = 0          # failures other than slow-downs so far
        self.timeouts = 0
        self.slow_rounds = 0
        self.first_slow_down: float | None = None
        self.patience_spent = False
        self._seen_attempt = 0
        self._next_wait = 0.0

    def _account(self, state: RetryCallState) -> BaseException | None:
        """Book the attempt's failure once (tenacity asks stop and wait in either order)."""
        exc = state.outcome.exception() if state.outcome else None
        if exc is None or state.attempt_number == self._seen_attempt:
            return exc
        self._seen_attempt = state.attempt_number
        self.book(exc)
        return exc

    def book(self, exc: BaseException) -> None:
        """Count a failed attempt and work out the wait before the next (also for an attempt made
        before tenacity took over: the first goes out without its machinery)."""
        if is_slow_down(exc):
            self._next_wait = slow_down_wait(headers_of(exc), self.slow_rounds, _SLOW_DOWN_BACKOFF_S)
            self.slow_rounds += 1
            self.first_slow_down = self.first_slow_down or time.monotonic()
            self.patience_spent = time.monotonic() + self._next_wait - self.first_slow_down > self.patience_s
        else:
            self.retries += 1
            self.timeouts += is_timeout(exc)
            asked = _asked_wait(headers_of(exc)) if status_of(exc) is not None else None
            base = self.backoff_s if isinstance(exc, BadAnswer) else _HTTP_BACKOFF_S
            self._next_wait = asked if asked is not None else \
                min(base * 2 ** (self.retries - 1), 8.0) * (0.75 + 0.5 * random.random())

    def exhausted(self, exc: BaseException) -> bool:
        """After `book(exc)`: no attempt is left."""
        if is_slow_down(exc):
            return self.patience_spent
        return self.retries > self.max_retries or self.timeouts > min(TIMEOUT_RETRIES, self.max_retries)

    @property
    def next_wait(self) -> float:
        return self._next_wait

    def stop(self, state: RetryCallState) -> bool:
        exc = self._account(state)
        return True if exc is None else self.exhausted(exc)

    def wait(self, state: RetryCallState) -> float:
        self._account(state)
        return self._next_wait


def _asked_wait(headers: Any) -> float | None:
    """The wait the server asks for (retry-after-ms, else Retry-After in seconds), up to 60 s; None if
    none or not a finite number (an HTTP-date Retry-After is not read: backoff applies)."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue
            if math.isfinite(seconds):  # "nan" parses, and asyncio.sleep(nan) never returns
                return min(max(seconds, 0.0), 60.0)
    return None
