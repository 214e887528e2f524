"""One OpenAI-compatible HTTP exchange over aiohttp, bounded: a JSON body posted; the answer read whole
(capped) or as server-sent-event lines (each line and the whole stream capped); every HTTP status shown
to a callback (the adaptive limiter); failures as typed errors that say whether the server was reached.

Why not the openai SDK on this path: profiled at concurrency 64, ~70% of the client's busy CPU was in
the SDK's `post` (options objects, header merging, httpx Request/URL objects, the httpx-aiohttp
bridge), about 0.9 ms per request against 0.25 ms for aiohttp alone, and the client, not the server,
capped throughput (bench/throughput.py). What the SDK added here is small and is kept in our words:
the bearer header, the statuses it retries (harness.endpoints.retries), its error body reading.

Everything a server sends is untrusted: sizes are counted after decompression (we ask for no
compression and inflate gzip/deflate ourselves, in bounded steps: aiohttp's own decompression
inflated a 1 MB gzip body to 1 GiB before any cap could count it), redirects are not followed (the
request carries the key), and the key never appears in an error we raise.

Enters: a URL, headers, timeouts, a JSON-able body. Leaves: the answer's bytes (or its events), or
HttpStatusError / WireFailure / AnswerRefused / NotAStream.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

# Caps on what a server may send (untrusted input): one event of a stream, an error body. A whole
# answer's cap is the caller's (it grows with max_tokens). Parsed JSON takes up to ~30x its bytes.
MAX_EVENT_BYTES = 1 << 20
MAX_ERROR_BYTES = 64 << 10
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class HttpStatusError(Exception):
    """The server answered with a status >= 300 (redirects are not followed: a POST carrying the API
    key goes only where model.base_url says); the body's error message, if it had one."""

    def __init__(self, status_code: int, headers: Any, body: Any, message: str, location: str | None):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.headers = headers
        self.body = body
        self.message = message
        self.location = location


class WireFailure(Exception):
    """The exchange did not complete. `kind`: "unreachable" (no connection was made: refused, unknown
    host, connect timeout), "timeout" (connected, then silence past the timeout), "cut" (connected,
    then dropped before the answer was complete) or "broken" (an answer that is not valid HTTP)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class AnswerRefused(Exception):
    """An answer we will not read: longer than its cap, or in an encoding we did not ask for."""


class NotAStream(Exception):
    """A streamed request answered with a whole JSON body (the server does not stream): its bytes."""

    def __init__(self, raw: bytes):
        super().__init__("a JSON body, not an event stream")
        self.raw = raw


def _failure(exc: BaseException) -> WireFailure:
    """An aiohttp exception in our terms (the order matters: the classes nest)."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return WireFailure("unreachable", f"no connection within the connect timeout ({name})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return WireFailure("unreachable", f"{name}: {exc.os_error}")
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return WireFailure("timeout", f"no bytes within the timeout ({name})")
    if isinstance(exc, aiohttp.ClientResponseError):  # a bad status line, oversized headers, bad chunking
        return WireFailure("broken", f"{name}: {str(exc)[:200]}")
    return WireFailure("cut", name)


def error_message(body: Any, text: str) -> str:
    """error.message of an OpenAI-style error body ({"error": {"message"}}), else what was sent."""
    if isinstance(body, dict):
        error = body.get("error")
        message = (error.get("message") if isinstance(error, dict) else error) or body.get("message")
        if message:
            return str(message)[:500]
    return text[:500] or "(no body)"


class _Inflater:
    """Decompresses a gzip or deflate body piece by piece, never more than `cap` bytes in all."""

    def __init__(self, encoding: str, cap: int):
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise AnswerRefused(f"an answer in Content-Encoding {encoding[:40]!r}, which was not asked for")
        self._inflate = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        self.left = cap

    def feed(self, piece: bytes) -> bytes:
        try:
            out = self._inflate.decompress(piece, self.left + 1)
        except zlib.error as exc:
            raise AnswerRefused(f"a compressed answer that does not decompress: {exc}") from None
        self.left -= len(out)
        if self.left < 0 or self._inflate.unconsumed_tail:
            raise AnswerRefused("a compressed answer that inflates past its cap")
        return out


class _BodyMeter:
    """Counts a body's pieces as they arrive, inflating them (bounded) if the server compressed it
    anyway; AnswerRefused once more than `cap` bytes came. A plain object, not an async generator
    wrapped around the reader: a generator left open at the end of a stream is finalized through the
    loop's self-pipe, a system call and a wake-up per request."""

    def __init__(self, response: aiohttp.ClientResponse, cap: int):
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        self.inflater = None if encoding in ("", "identity") else _Inflater(encoding, cap)
        self.cap = cap
        self.size = 0

    def feed(self, piece: bytes) -> bytes:
        if self.inflater is not None:
            piece = self.inflater.feed(piece)
        self.size += len(piece)
        if self.size > self.cap:
            raise AnswerRefused(f"an answer longer than {self.cap} bytes")
        return piece


async def _read_capped(response: aiohttp.ClientResponse, cap: int, *, truncate: bool = False) -> bytes:
    """The body, refused (or, `truncate`, cut) once longer than `cap`, without reading it all."""
    length = response.content_length
    if length is not None and length <= cap and "Content-Encoding" not in response.headers:
        return await response.read()
    parts: list[bytes] = []
    meter = _BodyMeter(response, cap)
    try:
        async for piece in response.content.iter_any():
            parts.append(meter.feed(piece))
    except AnswerRefused:
        if not truncate:
            raise
    return b"".join(parts)[:cap]


_STREAM_HEADERS = {"Accept": "text/event-stream"}


class JsonWire:
    """POSTs JSON to one URL over a pooled aiohttp session (made in the running loop, on first use)."""

    def __init__(self, url: str, api_key: str | None, *, connect_timeout_s: float, read_timeout_s: float,
                 on_status: Callable[[int], None]):
        self.url = url
        self.headers = {"Content-Type": "application/json", "Accept": "application/json",
                        "Accept-Encoding": "identity", "User-Agent": "harness (python aiohttp)"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._secret = api_key if api_key and len(api_key) >= 8 else None
        self.read_timeout_s = read_timeout_s
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        # A stream's silences are bounded by its reader's first-token and idle deadlines (openai_stream);
        # aiohttp's sock_read would re-arm a timer on every network read, the busiest path of a stream.
        self.stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=None)
        self.on_status = on_status
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No per-host limit: the limiter bounds what is in flight. No cookie jar: an API keeps no
            # cookies. No automatic decompression: _BodyMeter inflates, counting.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300), headers=self.headers,
                timeout=self.timeout, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        return self._session

    def scrub(self, text: str) -> str:
        """The text without the API key (error bodies and Location headers may echo the request)."""
        return text.replace(self._secret, "***") if self._secret and self._secret in text else text

    async def post(self, body: dict[str, Any], max_bytes: int) -> bytes:
        """The answer's bytes (a 2xx), at most `max_bytes`. Sending the request and waiting for the
        answer's headers share request_timeout_s (a server that never reads the body is silence too)."""
        session = self._ensure_session()
        try:
            async with asyncio.timeout(self.read_timeout_s):
                response = await session.post(self.url, data=_ENCODER.encode(body).encode(), allow_redirects=False)
            try:
                await self._check_status(response)
                return await _read_capped(response, max_bytes)
            finally:
                response.release()
        # The TimeoutError is ours above or aiohttp's sock_read (the attempt's own deadline cancels instead).
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _failure(exc) from None

    async def stream_events(self, body: dict[str, Any], max_bytes: int) -> AsyncIterator[list[bytes]]:
        """The answer's server-sent events (each event's lines, CRLF made LF, without the blank line that
        ends it), in batches of what each network read completed (one step of this generator per read,
        not per event or line); each event at most MAX_EVENT_BYTES, all together at most `max_bytes`.
        A whole JSON answer instead of a stream raises NotAStream."""
        try:
            async with self._ensure_session().post(self.url, data=_ENCODER.encode(body).encode(), allow_redirects=False,
                                                   headers=_STREAM_HEADERS, timeout=self.stream_timeout) as response:
                await self._check_status(response)
                if response.content_type == "application/json":
                    raise NotAStream(await _read_capped(response, max_bytes))
                tail = b""
                meter = _BodyMeter(response, max_bytes)
                async for piece in response.content.iter_any():
                    piece = meter.feed(piece)
                    buffer = tail + piece if tail else piece
                    if b"\r" in buffer:
                        buffer = buffer.replace(b"\r\n", b"\n")  # a CR at the very end waits for its LF
                    events = buffer.split(b"\n\n")
                    tail = events.pop()  # the event not yet ended by its blank line
                    if len(tail) > MAX_EVENT_BYTES or any(len(event) > MAX_EVENT_BYTES for event in events):
                        raise AnswerRefused(f"a stream event longer than {MAX_EVENT_BYTES} bytes")
                    if events:
                        yield events
                if tail.strip():
                    yield [tail.strip(b"\n")]
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _failure(exc) from None

    async def _check_status(self, response: aiohttp.ClientResponse) -> None:
        self.on_status(response.status)
        if response.status in (204, 205):
            raise AnswerRefused(f"a {response.status} answer, which has no content")
        if response.status < 300:
            return  # 3xx too is an error here: redirects are not followed (the key must not go elsewhere)
        try:
            raw = await _read_capped(response, MAX_ERROR_BYTES, truncate=True)
        except (aiohttp.ClientError, asyncio.TimeoutError, AnswerRefused):
            raw = b""
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            body = None
        location = response.headers.get("Location")
        raise HttpStatusError(response.status, response.headers, body, self.scrub(error_message(body, text)),
                              self.scrub(location[:300]) if location else None)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
