"""Adaptive concurrency for a rate-limited endpoint: additive increase, multiplicative decrease.

`AdaptiveLimiter` is an async context manager handing out slots, like an `asyncio.Semaphore`
whose size moves:

- it starts at the ceiling (`model.concurrency`: the most the user allows);
- `on_rate_limited()` (the endpoint calls it for every 429 it sees, on every attempt, while that
  request still holds its slot) halves the limit, floor 1, at most once per round trip; within the
  same burst each further 429 brings the limit down to the requests the server still holds (in flight
  but the refused one), so 64 falls to a capacity of 4 within milliseconds; and a 429 right after an
  increase (a probe) steps back to the limit before it instead of halving. A round trip is the
  recent latency of successful requests, capped at `cooldown_s` (which applies until a latency is
  known): the requests in flight when the server starts refusing all get their 429 within about one
  round trip, and that burst is one halving, not one per response. Every 429 also restarts the
  success count;
- `on_success()` counts successful responses; after `limit` of them in a row (no 429 between) the
  limit grows by one slot, up to the ceiling; below the limit at which the last slow-down came it
  takes PROBE_ROUNDS x `limit` (8 round trips), so a server at its capacity is probed into a 429
  every few round trips rather than every one, and a provider that was overloaded a moment ago is
  not hit at full width at once.

A lowered limit does not interrupt requests already holding slots; new ones wait until fewer
than `limit` are in flight. Waiters are served first come, first served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Callable

log = logging.getLogger(__name__)

# "Slow down" answers: 429 rate limit, 503 overloaded (DeepSeek), 529 overloaded (Anthropic).
SLOW_DOWN = frozenset({429, 503, 529})
# After a slow-down, the limit grows back one slot per PROBE_ROUNDS round trips (not one per round
# trip) until it passes where the slow-down came: a server at its capacity is then probed into a 429
# (and a halving) every few round trips instead of every one.
PROBE_ROUNDS = 8


class AdaptiveLimiter:
    def __init__(self, ceiling: int, *, floor: int = 1, cooldown_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ceiling < 1 or not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor ({floor}) <= ceiling ({ceiling})")
        self.ceiling = ceiling
        self.floor = floor
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.limit = ceiling
        self.in_flight = 0
        self.min_limit = ceiling
        self._slowed_at = 0  # the limit at the last decrease while growing back below it (0: none)
        # (time, new limit) at the start and at every change: for tests and the run log.
        self.history: list[tuple[float, int]] = [(clock(), ceiling)]
        self.rate_limited = 0  # every 429 seen, counted or not
        self.decreases = 0
        self.successes = 0
        self._streak = 0
        self._last_decrease = -float("inf")
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._latency_s: float | None = None
        self._probe_from: int | None = None  # the limit before the last increase, while it is a probe
        self._raised_at = -float("inf")

    # --- slots -------------------------------------------------------------------------------------

    async def acquire(self) -> None:
        if not self._waiters and self.in_flight < self.limit:
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the slot is counted for us by _wake before the result is set
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted and cancelled in the same tick: hand the slot on
            elif waiter in self._waiters:  # _wake may already have dropped a cancelled waiter
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        if self.in_flight <= 0:
            raise RuntimeError("AdaptiveLimiter.release() without a matching acquire()")
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    async def __aenter__(self) -> "AdaptiveLimiter":
        await self.acquire()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release()

    # --- signals -----------------------------------------------------------------------------------

    def on_rate_limited(self) -> bool:
        """A 429 (or another "slow down" answer). True if it lowered the limit."""
        self.rate_limited += 1
        self._streak = 0
        now = self._clock()
        # What the server holds: the requests in flight but this one (which holds a slot while its answer
        # is read). In a burst of refusals this falls to the server's capacity within milliseconds,
        # where halving once per round trip took four round trips from 64 to 4.
        holding = self.in_flight - 1 if self.in_flight >= 1 else self.limit
        if now - self._last_decrease < self.effective_cooldown_s:  # the same burst: follow what the server holds
            if max(self.floor, holding) < self.limit and self._slowed_at:
                self._set(max(self.floor, holding), now)
                return True
            return False
        self._last_decrease = now
        probed = self._probe_from is not None and now - self._raised_at <= 2 * self.effective_cooldown_s
        self._slowed_at = self.limit
        # Right after a probe (one slot more than what held), step back to what held: the server is at
        # its capacity, not overloaded (halving there cost a capacity-4 server a third of its throughput).
        new = max(self.floor, self._probe_from if probed and self._probe_from is not None else self.limit // 2)
        self._probe_from = None
        if new == self.limit:
            return False
        self.decreases += 1
        self._set(new, now)
        return True

    @property
    def effective_cooldown_s(self) -> float:
        """One round trip, as TCP decreases at most once per RTT: the 429s of requests that were in
        flight together arrive within about one latency of each other. Until a latency is known (and
        never more than) `cooldown_s`."""
        if self._latency_s is None:
            return self.cooldown_s
        return min(self.cooldown_s, max(0.01, 2 * self._latency_s))

    def note_latency(self, seconds: float) -> None:
        """A successful request's latency (moving average): the round trip the cooldown follows."""
        self._latency_s = seconds if self._latency_s is None else 0.8 * self._latency_s + 0.2 * seconds

    def on_success(self) -> bool:
        """A successful response. True if it raised the limit."""
        self.successes += 1
        if self.limit >= self.ceiling:
            self._streak = 0
            return False
        self._streak += 1
        if self._streak < self.limit * (PROBE_ROUNDS if self.limit < self._slowed_at else 1):
            return False
        self._streak = 0
        self._probe_from, self._raised_at = self.limit, self._clock()
        self._set(self.limit + 1, self._raised_at)
        if self.limit >= self._slowed_at:  # past where the last slow-down came: back to one per round trip
            self._slowed_at = 0
        self._wake()
        return True

    def _set(self, limit: int, now: float) -> None:
        self.limit = limit
        self.min_limit = min(self.min_limit, limit)
        self.history.append((now, limit))

    def __repr__(self) -> str:
        return (f"AdaptiveLimiter(limit={self.limit}/{self.ceiling}, in_flight={self.in_flight}, "
                f"min={self.min_limit}, 429s={self.rate_limited}, decreases={self.decreases})")

    def observe(self, status_code: int, where: str = "") -> None:
        """One HTTP response's status, as an httpx response hook sees it (before the SDK decides to
        retry): a slow-down answer halves the limit, a success counts towards growing it back."""
        if status_code in SLOW_DOWN:
            before = self.limit
            if self.on_rate_limited():
                log.info("%s answered %d: concurrency lowered %d -> %d", where, status_code, before, self.limit)
        elif status_code < 400 and self.on_success():
            log.debug("%s: concurrency raised to %d", where, self.limit)

    def stats(self) -> dict[str, Any]:
        """For the run record: how far the limit fell and how many slow-down answers came."""
        return {"ceiling": self.ceiling, "final_limit": self.limit, "min_limit": self.min_limit,
                "rate_limited": self.rate_limited, "decreases": self.decreases}
