"""A scriptable, fault-injecting OpenAI-compatible server on 127.0.0.1 for endpoint tests.

aiohttp.web runs in its own event loop in a background thread. Each test queues planned answers
(consumed one per chat request, in arrival order); when the plan is empty the server answers a
default chat.completion after `latency_s` (text from `content_fn(request_json)`, usage from the
configured token counts), or, with `fault_rates`, draws a fault per request from a seeded RNG.
Afterwards the test reads what the server received and did:

    with FaultServer(latency_s=0.01, fault_rates={"429": 0.1, "reset": 0.05}) as server:
        server.plan(status(429, headers={"Retry-After": "1"}), ok(chat_body("hello")))
        ...  # talk to server.base_url (http://127.0.0.1:PORT/v1)
        server.requests   # [{"path", "json", "headers", "t"}], t = time.monotonic() at arrival
        server.received   # chat requests that arrived
        server.completed  # chat requests answered 200 with a valid body: what a provider bills
        server.outcomes   # Counter: "ok", "429", "500", "reset", "hang", "malformed", ...
        server.max_in_flight

Planned answers: ok, delay, status, reset, hang, malformed, empty_choices, null_content, keepalive.
`set_capacity(n)` makes it a rate-limited provider: a request arriving while n are in flight is
answered 429 at once (and is not counted in flight).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections import Counter
from typing import Any, Callable

from aiohttp import web

from tests.loopback_server import LoopbackServer


def chat_body(content: str | None = "ok", prompt_tokens: int = 5, completion_tokens: int = 2,
              **overrides: Any) -> dict[str, Any]:
    """A valid chat.completion response body, with usage."""
    body = {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
    body.update(overrides)
    return body


# Planned answers.
def ok(body: dict[str, Any] | None = None) -> tuple:
    return ("ok", body or chat_body())


def delay(seconds: float, body: dict[str, Any] | None = None) -> tuple:
    """A valid answer after `seconds` (billed even if the client gave up waiting)."""
    return ("delay", seconds, body or chat_body())


def status(code: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> tuple:
    body = body if body is not None else {"error": {"message": f"injected {code}", "type": "fault", "code": code}}
    return ("status", code, body, headers or {})


def reset() -> tuple:
    """Close the TCP connection without answering."""
    return ("reset",)


def hang(seconds: float) -> tuple:
    """No answer for `seconds`, then the connection is closed without one (never billed)."""
    return ("hang", seconds)


def malformed(text: str = '{"id": "chatcmpl-fault", "object": "chat.completion", "choices": [{"ind') -> tuple:
    """200, Content-Type application/json, a body that is not JSON (a truncated answer)."""
    return ("malformed", text)


def empty_choices() -> tuple:
    """200 with a well-formed body whose "choices" is []."""
    return ("ok", chat_body(choices=[]))


def null_content() -> tuple:
    """200, message content null, finish_reason "stop": a valid (empty) answer."""
    return ("ok", chat_body(None))


def keepalive(n: int, body: dict[str, Any] | None = None, interval_s: float = 0.05) -> tuple:
    """DeepSeek-style non-streaming keep-alive: a 200 whose chunked body is n blank lines, one every
    `interval_s`, before the JSON."""
    return ("keepalive", n, body or chat_body(), interval_s)


def streamed(body: dict[str, Any] | None = None, **opts: Any) -> tuple:
    """A streamed answer with a fault: stall_after=k (chunks, then silence for stall_s, then the
    connection drops), cut_after=k (chunks, then the connection drops), keepalive_s (comments first),
    no_finish=True (the chunks, then the stream ends without finish_reason or [DONE])."""
    return ("stream", body or chat_body(), opts)


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# fault_rates keys that are not HTTP statuses.
_NAMED_FAULTS = {"reset", "hang", "malformed", "empty_choices", "null_content"}


class FaultServer(LoopbackServer):
    url_suffix = "/v1"

    def __init__(self, latency_s: float = 0.0, prompt_tokens: int = 5, completion_tokens: int = 2,
                 content_fn: Callable[[Any], str] | None = None,
                 fault_rates: dict[str, float] | None = None, seed: int = 0,
                 fault_headers: dict[str, str] | None = None, hang_s: float = 30.0,
                 balance_usd: float = 100.0, price_per_completion_usd: float = 0.0,
                 usage_extra: dict[str, Any] | None = None) -> None:
        """`usage_extra` is merged into every default answer's usage (e.g. DeepSeek's
        {"prompt_cache_hit_tokens": 3}); `fault_headers` go on drawn status faults and capacity 429s (e.g. {"retry-after-ms": "10"}
        for fast SDK retries); `hang_s` is how long a drawn "hang" lasts."""
        self.latency_s = latency_s
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.content_fn = content_fn
        self.fault_rates = dict(fault_rates or {})
        unknown = [k for k in self.fault_rates if k not in _NAMED_FAULTS and not k.isdigit()]
        if unknown or sum(self.fault_rates.values()) > 1:
            raise ValueError(f"bad fault_rates {self.fault_rates}: keys are statuses or {sorted(_NAMED_FAULTS)}, sum <= 1")
        self.fault_headers = dict(fault_headers or {})
        self.hang_s = hang_s
        # GET /user/balance answers DeepSeek's shape: the starting balance minus what completions cost.
        self.balance_usd = balance_usd
        self.price_per_completion_usd = price_per_completion_usd
        self.usage_extra = dict(usage_extra or {})
        self.answered_at: list[float] = []  # time.time() of each default answer as it is sent
        self._rng = random.Random(seed)
        self.capacity: int | None = None
        self.capacity_headers: dict[str, str] = {}
        self.stream_interval_s = 0.0  # between streamed chunks
        self.stream_log: list[dict] = []

        super().__init__()
        self.received = 0
        self.completed = 0
        self.outcomes: Counter[str] = Counter()

    def set_capacity(self, n: int | None, headers: dict[str, str] | None = None) -> None:
        """At most n requests in flight; more are answered 429 (with `headers`, else fault_headers).
        None lifts the limit."""
        with self._lock:
            self.capacity = n
            self.capacity_headers = dict(headers) if headers is not None else dict(self.fault_headers)

    def bodies(self) -> list[dict[str, Any]]:
        return [r["json"] for r in self.requests if r["path"] == "/v1/chat/completions"]

    # --- answering ---------------------------------------------------------------------------------

    def _default_action(self, payload: Any) -> tuple:
        """Called under the lock when the plan is empty."""
        if self.fault_rates:
            draw, edge = self._rng.random(), 0.0
            for name, rate in self.fault_rates.items():
                edge += rate
                if draw < edge:
                    if name.isdigit():
                        return status(int(name), headers=self.fault_headers)
                    return {"reset": reset, "malformed": malformed, "empty_choices": empty_choices,
                            "null_content": null_content, "hang": lambda: hang(self.hang_s)}[name]()
        content = self.content_fn(payload) if self.content_fn else "ok"
        body = chat_body(content, self.prompt_tokens, self.completion_tokens)
        body["usage"].update(self.usage_extra)
        return ("delay", self.latency_s, body) if self.latency_s > 0 else ("ok", body)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, cut short when the server stops; True if it stopped."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    def _outcome(self, name: str, billed: bool = False) -> None:
        with self._lock:
            self.outcomes[name] += 1
            if billed:
                self.completed += 1
                self.answered_at.append(time.time())

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        payload, arrived = await self._read_json(request)
        with self._lock:
            self._record(request, payload, arrived)
            self.received += 1
            if self.capacity is not None and self.in_flight >= self.capacity:
                self.outcomes["429"] += 1
                self.outcomes["over_capacity"] += 1
                return web.json_response(
                    {"error": {"message": "Rate limit reached: too many concurrent requests", "type": "rate_limit",
                               "code": 429}}, status=429, headers=self.capacity_headers)
            action = self._plan.popleft() if self._plan else self._default_action(payload)
            self._enter_flight()
        try:
            if isinstance(payload, dict) and payload.get("stream") and action[0] in ("ok", "delay", "stream"):
                return await self._stream(request, action, payload)
            return await self._answer(request, action)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, request: web.Request, action: tuple) -> web.StreamResponse:
        kind = action[0]
        if kind == "ok":
            has_choices = bool(action[1].get("choices"))
            self._outcome("ok" if has_choices else "empty_choices", billed=has_choices)
            return web.json_response(action[1])
        if kind == "delay":
            if await self._sleep(action[1]):
                raise web.HTTPServiceUnavailable()
            if request.transport is None or request.transport.is_closing():
                # The client went away mid-generation (killed): like vLLM, which aborts a request whose
                # client disconnected, nothing is delivered and nothing billed.
                self._outcome("client_gone")
                return web.Response(status=499)
            self._outcome("ok", billed=True)
            return web.json_response(action[2])
        if kind == "status":
            _, code, body, headers = action
            self._outcome(str(code))
            return web.json_response(body, status=code, headers=headers)
        if kind == "reset":
            self._outcome("reset")
            return self._drop(request)
        if kind == "raw":  # ("raw", status, headers, body bytes): written as they are, then the connection closed
            _, code, headers, raw = action
            self._outcome(f"raw_{code}")
            head = f"HTTP/1.1 {code} Raw\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            if request.transport is not None:
                request.transport.write(head.encode() + b"Connection: close\r\n\r\n" + raw)
                request.transport.close()
            return web.Response(status=204)  # never sent: the transport is closing
        if kind == "hang":
            self._outcome("hang")
            await self._sleep(action[1])
            return self._drop(request)
        if kind == "malformed":
            self._outcome("malformed")
            return web.Response(text=action[1], content_type="application/json")
        if kind == "keepalive":
            _, n, body, interval = action
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(n):
                await response.write(b"\n")
                if await self._sleep(interval):
                    break
            self._outcome("keepalive", billed=True)  # before the last byte: the client may check at once
            await response.write(json.dumps(body).encode())
            await response.write_eof()
            return response
        raise ValueError(f"unknown planned action {action!r}")

    async def _stream(self, request: web.Request, action: tuple, payload: dict) -> web.StreamResponse:
        """Server-sent events for a streamed request: the planned body's reasoning then content in
        4-character chunks, `stream_interval_s` apart, then finish_reason, the usage chunk if asked
        (stream_options.include_usage) and [DONE]. ("stream", body, {stall_after, stall_s, cut_after,
        keepalive_s}) plans a stall, a cut or keep-alive comments. The server's own timing of each
        response goes to `stream_log`."""
        arrived = time.perf_counter()
        opts: dict = {}
        if action[0] == "delay":
            if await self._sleep(action[1]):
                raise web.HTTPServiceUnavailable()
            body = action[2]
        elif action[0] == "stream":
            body, opts = action[1], action[2]
        else:
            body = action[1]
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        keepalive_s = opts.get("keepalive_s", 0.0)
        while keepalive_s > 0:  # comments only: not progress
            await response.write(b": keep-alive\n\n")
            keepalive_s -= 0.05
            if await self._sleep(0.05):
                break
        empty_s = opts.get("empty_events_s", 0.0)
        while empty_s > 0:  # valid events that carry no token: not progress towards the first one
            await response.write(b'data: {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}\n\n')
            empty_s -= 0.05
            if await self._sleep(0.05):
                break
        choices = body.get("choices") or []
        message = choices[0].get("message") or {} if choices else {}
        pieces = [("reasoning_content", r[i:i + 4]) for r in [message.get("reasoning_content") or ""]
                  for i in range(0, len(r), 4)]
        pieces += [("content", c[i:i + 4]) for c in [message.get("content") or ""] for i in range(0, len(c), 4)]
        base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model", "m")}
        first = last = None
        pending: list[bytes] = []  # events not yet written: one write per interval, not per event
        for k, (field, piece) in enumerate(pieces):
            if opts.get("cut_after") == k:
                await self._flush(response, pending)
                self._outcome("stream_cut")
                return self._drop(request)
            if opts.get("stall_after") == k:
                await self._flush(response, pending)
                self._outcome("stream_stall")
                await self._sleep(opts.get("stall_s", 30.0))
                return self._drop(request)
            chunk = {**base, "choices": [{"index": 0, "delta": {field: piece}, "finish_reason": None}]}
            pending.append(f"data: {json.dumps(chunk)}\n\n".encode())
            last = time.perf_counter()
            first = first or last
            if self.stream_interval_s:
                await self._flush(response, pending)
                if await self._sleep(self.stream_interval_s):
                    break
        if opts.get("no_finish"):  # the stream just ends: no finish_reason, no [DONE]
            self._outcome("stream_unfinished")
            await self._flush(response, pending)
            await response.write_eof()
            return response
        finish = choices[0].get("finish_reason", "stop") if choices else "stop"
        pending.append(f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': finish}]})}\n\n".encode())
        if (payload.get("stream_options") or {}).get("include_usage") and "usage" in body:
            pending.append(f"data: {json.dumps({**base, 'choices': [], 'usage': body['usage']})}\n\n".encode())
        pending.append(b"data: [DONE]\n\n")
        with self._lock:  # recorded before the last bytes leave: the client may check as soon as they arrive
            self.stream_log.append({"arrived": arrived, "first_chunk": first, "last_chunk": last, "chunks": len(pieces)})
        self._outcome("ok", billed=True)
        await self._flush(response, pending)
        await response.write_eof()
        return response

    @staticmethod
    async def _flush(response: web.StreamResponse, pending: list[bytes]) -> None:
        """Write the events made since the last write at once (with no interval between chunks, a
        write per event cost the server more CPU than the client spent reading them: on a 2-core
        machine the bench then measured the server)."""
        if pending:
            await response.write(b"".join(pending))
            pending.clear()

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        """Close the connection with nothing written; aiohttp then has nothing to send to."""
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=204)  # never sent: the transport is gone

    async def _balance(self, request: web.Request) -> web.Response:
        with self._lock:
            self._record(request, None)
            total = self.balance_usd - self.completed * self.price_per_completion_usd
        return web.json_response({"is_available": True, "balance_infos": [
            {"currency": "USD", "total_balance": f"{total:.6f}", "granted_balance": "0.00",
             "topped_up_balance": f"{total:.6f}"}]})

    async def _models(self, request: web.Request) -> web.Response:
        with self._lock:
            self._record(request, None)
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "fault"}]})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/user/balance", self._balance)
