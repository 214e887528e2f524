"""A scriptable fake of Anthropic's Messages API (POST /v1/messages) on 127.0.0.1 for endpoint tests.

Answers follow the documented shapes (https://platform.claude.com/docs/en/api/messages, .../api/errors):
a Message object on success, {"type": "error", "error": {"type", "message"}, "request_id"} with the
documented status on failure. aiohttp.web runs in its own event loop in a background thread. Tests
queue planned answers (one per request, in arrival order; when the plan is empty the server answers
`message_body()`), and afterwards read what the server received:

    with AnthropicServer() as server:
        server.plan(error(429, "rate_limit_error", headers={"retry-after-ms": "10"}), ok(message_body("hi")))
        ...  # AnthropicEndpoint(model, server.base_url)
        server.requests  # [{"path", "json", "headers", "t"}]
        server.max_in_flight
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from tests.loopback_server import LoopbackServer

# The documented status of each error type.
ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "overloaded_error": 529,
}


def message_body(text: str = "ok", *, content: list[dict[str, Any]] | None = None, stop_reason: str = "end_turn",
                 stop_sequence: str | None = None, usage: dict[str, Any] | None = None,
                 model: str = "claude-opus-4-7") -> dict[str, Any]:
    """A Message object as the Messages API returns it (non-streaming)."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content if content is not None else [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage if usage is not None else {
            "input_tokens": 12, "output_tokens": 3,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "service_tier": "standard",
        },
    }


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


# Planned answers.
def ok(body: dict[str, Any] | None = None) -> tuple:
    return ("ok", body or message_body())


def delay(seconds: float, body: dict[str, Any] | None = None) -> tuple:
    return ("delay", seconds, body or message_body())


def error(status: int, error_type: str, message: str | None = None, headers: dict[str, str] | None = None) -> tuple:
    return ("status", status, error_body(error_type, message or f"injected {error_type}"), headers or {})


class AnthropicServer(LoopbackServer):
    def bodies(self) -> list[dict[str, Any]]:
        return [r["json"] for r in self.requests if r["path"] == "/v1/messages"]

    async def _messages(self, request: web.Request) -> web.Response:
        payload, arrived = await self._read_json(request)
        with self._lock:
            self._record(request, payload, arrived)
            action = self._plan.popleft() if self._plan else ok()
            self._enter_flight()
        try:
            kind = action[0]
            headers = {"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
            if kind == "ok" and payload.get("stream"):
                return await self._stream(request, action[1], headers)
            if kind == "ok":
                return web.json_response(action[1], headers=headers)
            if kind == "delay":
                await asyncio.sleep(action[1])
                return web.json_response(action[2], headers=headers)
            if kind == "status":
                _, code, body, extra = action
                return web.json_response(body, status=code, headers={**headers, **extra})
            raise ValueError(f"unknown planned action {action!r}")
        finally:
            with self._lock:
                self.in_flight -= 1

    stream_interval_s = 0.0

    async def _stream(self, request: web.Request, body: dict[str, Any], headers: dict[str, str]) -> web.StreamResponse:
        """The documented event stream for `body`: message_start (usage with input tokens), per content
        block a start, deltas of 4 characters `stream_interval_s` apart, a stop; message_delta (stop
        reason, output tokens); message_stop."""
        response = web.StreamResponse(status=200, headers={**headers, "Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n".encode())

        usage = body.get("usage") or {}
        start = {**body, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}
        await send("message_start", {"message": start})
        for index, block in enumerate(body.get("content") or []):
            field, delta_type = ("thinking", "thinking_delta") if block.get("type") == "thinking" else ("text", "text_delta")
            await send("content_block_start", {"index": index, "content_block": {**block, field: ""}})
            text = block.get(field) or ""
            for i in range(0, len(text), 4):
                await send("content_block_delta", {"index": index, "delta": {"type": delta_type, field: text[i:i + 4]}})
                if self.stream_interval_s:
                    await asyncio.sleep(self.stream_interval_s)
            await send("content_block_stop", {"index": index})
        await send("message_delta", {"delta": {"stop_reason": body.get("stop_reason"), "stop_sequence": None},
                                     "usage": {"output_tokens": usage.get("output_tokens", 0)}})
        await send("message_stop", {})
        await response.write_eof()
        return response

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
