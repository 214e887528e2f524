"""One OpenAI-compatible HTTP exchange over aiohttp, bounded: a JSON body posted; the answer read whole
(capped) or as server-sent-event lines (each line and the whole stream capped); every HTTP status shown
to a callback (the adaptive limiter); failures as typed errors that say whether the server was reached.

Why not the openai SDK on this path: profiled at concurrency 64, ~70% of the client's busy CPU was in
the SDK's `post` (options objects, header merging, httpx Request/URL objects, the httpx-aiohttp
bridge), about 0.9 ms per request against 0.25 ms for aiohttp alone, and the client, not the server,
capped throughput (bench/throughput.py). What the SDK added here is small and is kept in our words:
the bearer header, the statuses it retries (harness.endpoints.retries), its error body reading.

Enters: a URL, headers, timeouts, a JSON-able body. Leaves: the answer's bytes (or its lines), or
HttpStatusError / WireFailure / AnswerTooLong.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

# Caps on what a server may send (untrusted input): a whole non-streamed answer, one event line of a
# stream, an error body. A whole stream is capped by the caller (it grows with max_tokens).
MAX_BODY_BYTES = 32 << 20
MAX_LINE_BYTES = 4 << 20
MAX_ERROR_BYTES = 64 << 10


class HttpStatusError(Exception):
    """The server answered with a status >= 300 (redirects are not followed: a POST carrying the API
    key goes only where model.base_url says); the body's error message, if it had one."""

    def __init__(self, status_code: int, headers: Any, body: Any, message: str):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.headers = headers
        self.body = body
        self.message = message


class WireFailure(Exception):
    """The exchange did not complete. `kind`: "unreachable" (no connection was made: refused, unknown
    host, connect timeout), "timeout" (connected, then silence past the read timeout) or "cut"
    (connected, then dropped before the answer was complete)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class AnswerTooLong(Exception):
    """More bytes than the cap for this answer, line or stream."""


def _failure(exc: BaseException) -> WireFailure:
    """An aiohttp exception in our terms (the order matters: the classes nest)."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return WireFailure("unreachable", f"no connection within the connect timeout ({name})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return WireFailure("unreachable", f"{name}: {exc.os_error}")
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return WireFailure("timeout", f"no bytes within the read timeout ({name})")
    return WireFailure("cut", name)


def error_message(body: Any, text: str) -> str:
    """error.message of an OpenAI-style error body ({"error": {"message"}}), else what was sent."""
    if isinstance(body, dict):
        error = body.get("error")
        message = (error.get("message") if isinstance(error, dict) else error) or body.get("message")
        if message:
            return str(message)[:500]
    return text[:500] or "(no body)"


class JsonWire:
    """POSTs JSON to one URL over a pooled aiohttp session (made in the running loop, on first use)."""

    def __init__(self, url: str, headers: dict[str, str], *, connect_timeout_s: float, read_timeout_s: float,
                 on_status: Callable[[int], None]):
        self.url = url
        self.headers = {"Content-Type": "application/json", "Accept": "application/json",
                        "User-Agent": "harness (python aiohttp)", **headers}
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self.on_status = on_status
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No per-host limit: the limiter bounds what is in flight. No cookie jar: an API keeps no cookies.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300), headers=self.headers,
                timeout=self.timeout, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def post(self, body: dict[str, Any]) -> bytes:
        """The answer's bytes (a 2xx), at most MAX_BODY_BYTES."""
        try:
            async with self._ensure_session().post(self.url, data=_encode(body), allow_redirects=False) as response:
                await self._check_status(response)
                return await _read_capped(response, MAX_BODY_BYTES)
        except aiohttp.ClientError as exc:
            raise _failure(exc) from None
        except asyncio.TimeoutError as exc:  # aiohttp's sock_read (the attempt's own deadline cancels instead)
            raise _failure(exc) from None

    async def stream_lines(self, body: dict[str, Any], max_bytes: int) -> AsyncIterator[list[bytes]]:
        """The answer's complete lines (without their line ends), in batches of what each network read
        brought (one step of this generator per read, not per line); each line at most MAX_LINE_BYTES,
        all together at most `max_bytes`."""
        try:
            async with self._ensure_session().post(self.url, data=_encode(body), allow_redirects=False,
                                                   headers={"Accept": "text/event-stream"}) as response:
                await self._check_status(response)
                total = 0
                tail = b""
                async for piece in response.content.iter_any():
                    total += len(piece)
                    if total > max_bytes:
                        raise AnswerTooLong(f"a stream longer than {max_bytes} bytes")
                    if b"\n" not in piece:
                        tail += piece
                        if len(tail) > MAX_LINE_BYTES:
                            raise AnswerTooLong(f"a stream line longer than {MAX_LINE_BYTES} bytes")
                        continue
                    lines = (tail + piece).split(b"\n") if tail else piece.split(b"\n")
                    tail = lines.pop()
                    if len(tail) > MAX_LINE_BYTES or any(len(line) > MAX_LINE_BYTES for line in lines):
                        raise AnswerTooLong(f"a stream line longer than {MAX_LINE_BYTES} bytes")
                    yield lines
                if tail:
                    yield [tail]
        except aiohttp.ClientError as exc:
            raise _failure(exc) from None
        except asyncio.TimeoutError as exc:
            raise _failure(exc) from None

    async def _check_status(self, response: aiohttp.ClientResponse) -> None:
        self.on_status(response.status)
        if response.status < 300:
            return  # 3xx too is an error here: redirects are not followed (the key must not go elsewhere)
        try:
            raw = await _read_capped(response, MAX_ERROR_BYTES, truncate=True)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            raw = b""
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            body = None
        raise HttpStatusError(response.status, response.headers, body, error_message(body, text))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def _read_capped(response: aiohttp.ClientResponse, cap: int, *, truncate: bool = False) -> bytes:
    """The body, refusing (or, `truncate`, cutting) one longer than `cap` without reading it all."""
    length = response.content_length
    if length is not None and length <= cap and "Content-Encoding" not in response.headers:
        return await response.read()  # compressed bodies are read piece by piece: a small body may inflate
    parts: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        parts.append(piece)
        if size > cap:
            if truncate:
                return b"".join(parts)[:cap]
            raise AnswerTooLong(f"an answer longer than {cap} bytes")
    return b"".join(parts)
