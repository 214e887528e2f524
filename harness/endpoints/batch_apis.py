"""The two batch APIs a run can be sent through, behind one small interface: submit a list of requests,
read the batch's state, stream its results. Shapes as documented:

- OpenAI Batch API (platform.openai.com/docs/guides/batch, /docs/api-reference/batch): a JSONL file of
  {"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"} uploaded with purpose "batch",
  a batch over it with completion_window "24h"; statuses validating, in_progress, finalizing, completed,
  failed, expired, cancelling, cancelled; results in output_file_id (one line per answered request,
  {"custom_id", "response": {"status_code", "body"}, "error"}) and error_file_id (failed and, for an
  expired batch, unprocessed requests, code "batch_expired").
- Anthropic Message Batches (docs.anthropic.com/en/docs/build-with-claude/batch-processing,
  /en/api/creating-message-batches): {"requests": [{"custom_id", "params"}]}; processing_status
  in_progress, canceling, ended; results as JSONL, each {"custom_id", "result": {"type": "succeeded",
  "message"} | {"type": "errored", "error"} | {"type": "canceled"} | {"type": "expired"}}.

Both SDKs are used here (this is the control plane: a handful of calls per run, with the SDKs' own
retries); answers are parsed by the same code as online answers, usage checks included.
"""

from __future__ import annotations

import io
import json
import uuid
from urllib.parse import urlsplit
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.common.exchange import ChatRequest, Completion
from harness.config import ModelConfig
from harness.endpoints.anthropic_format import build_message_kwargs, normalize_base_url, parse_message
from harness.endpoints.base import RequestFailed
from harness.endpoints.openai_compat import check_answer, resolve_api_key
from harness.endpoints.openai_format import build_request_kwargs, parse_chat_completion
from harness.endpoints.retries import AttemptFailed

CONTROL_RETRIES = 5  # SDK retries for uploads, polls and listings (safe to repeat); never for a create call
# A result line is one answer: capped like an online answer (32 MiB); a result file at that per item.
MAX_LINE_BYTES = 32 << 20
READ_CHUNK = 1 << 16


async def bounded_lines(url: str, headers: dict[str, str], items: int, timeout_s: float) -> AsyncIterator[dict[str, Any]]:
    """A JSONL download, line by line, bounded: a line over MAX_LINE_BYTES is skipped (its request then
    has no result and is retried online), a file over `items` x MAX_LINE_BYTES is refused. Lines that
    are not JSON objects are skipped the same way. The key goes in `headers`, to the configured host only."""
    import aiohttp

    total_cap = max(1, items) * MAX_LINE_BYTES
    # A whole-download deadline too: a server trickling a byte at a time never trips the read timeout.
    timeout = aiohttp.ClientTimeout(total=timeout_s + 10.0 * max(1, items), sock_connect=timeout_s, sock_read=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        async with session.get(url, headers={**headers, "Accept-Encoding": "identity"}, allow_redirects=False) as response:
            if response.status != 200:
                raise RequestFailed(f"reading batch results from {url}: HTTP {response.status}", kind="batch_results",
                                    status=response.status)
            if response.headers.get("Content-Encoding", "identity").lower() not in ("identity", ""):
                raise RequestFailed(f"batch results at {url} came {response.headers['Content-Encoding']}-encoded "
                                    f"though asked for identity: refused", kind="batch_results")
            pending, skipping, read = bytearray(), False, 0
            async for chunk in response.content.iter_chunked(READ_CHUNK):
                read += len(chunk)
                if read > total_cap:
                    raise RequestFailed(f"batch results at {url} exceed {total_cap >> 20} MiB for {items} item(s): "
                                        f"refused", kind="batch_results")
                searched = len(pending)  # only the new bytes can hold a new line end (no quadratic re-scan)
                pending += chunk
                start, end = 0, pending.find(b"\n", searched)
                while end != -1:
                    if skipping:
                        skipping = False
                    elif parsed := _json_object(bytes(pending[start:end])):
                        yield parsed
                    start, end = end + 1, pending.find(b"\n", end + 1)
                del pending[:start]
                if len(pending) > MAX_LINE_BYTES:
                    pending, skipping = bytearray(), True
            if pending and not skipping and (parsed := _json_object(bytes(pending))):
                yield parsed


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line) if line.strip() else None
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
BATCH_PROVIDERS = {"openai": "the OpenAI Batch API", "anthropic": "Anthropic Message Batches"}


@dataclass(frozen=True)
class BatchState:
    id: str
    status: str            # the provider's own word
    ended: bool            # nothing more will change
    counts: dict[str, int] = field(default_factory=dict)
    ended_at: float | None = None  # unix seconds
    problem: str = ""      # why a batch failed as a whole (validation errors)


@dataclass(frozen=True)
class ItemResult:
    """One request's outcome in the batch: its answer, or why there is none."""

    custom_id: str
    outcome: Completion | RequestFailed


class BatchAPI(Protocol):
    name: str

    async def submit(self, items: list[tuple[str, ChatRequest]], tag: str) -> str: ...

    async def find(self, tag: str, submitted_at: float) -> str | None: ...

    async def state(self, batch_id: str) -> BatchState: ...

    def results(self, state: BatchState, requests: dict[str, ChatRequest]) -> AsyncIterator[ItemResult]: ...

    async def aclose(self) -> None: ...


def _failed(custom_id: str, kind: str, message: str, status: int | None = None) -> ItemResult:
    return ItemResult(custom_id, RequestFailed(f"batch item {custom_id}: {message}", kind=kind, status=status))


class OpenAIBatches:
    name = "OpenAI Batch API"

    def __init__(self, model: ModelConfig, base_url: str):
        import openai

        self.model = model
        self.client = openai.AsyncOpenAI(api_key=resolve_api_key(model), base_url=base_url,
                                         max_retries=CONTROL_RETRIES, timeout=model.request_timeout_s)
        self._files: dict[str, tuple[str | None, str | None]] = {}  # batch id -> (output file, error file)

    async def submit(self, items: list[tuple[str, ChatRequest]], tag: str) -> str:
        """Upload the JSONL and create the batch; `tag` goes into its metadata so a run killed between
        the create call and the journal finds it again (`find`)."""
        lines = []
        for custom_id, request in items:
            kwargs = build_request_kwargs(self.model, request)
            body = {k: v for k, v in kwargs.items() if k != "extra_body"} | (kwargs.get("extra_body") or {})
            lines.append(json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                                     "body": body}, ensure_ascii=False))
        upload = await self.client.files.create(
            file=("harness-batch.jsonl", io.BytesIO(("\n".join(lines) + "\n").encode())), purpose="batch")
        # Not retried: a create whose answer was lost may have made a batch; the next run finds it by its tag.
        batch = await self.client.with_options(max_retries=0).batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                                 completion_window=self.model.batch_completion_window,
                                                 metadata={"harness_tag": tag})
        return batch.id

    async def find(self, tag: str, submitted_at: float) -> str | None:
        """The batch carrying `tag`, among those created since the journal was written (newest first:
        the listing stops at the first batch older than that, or after 50 pages)."""
        seen = 0
        async for batch in self.client.batches.list(limit=100):
            if (batch.metadata or {}).get("harness_tag") == tag:
                return batch.id
            seen += 1
            if batch.created_at < submitted_at - 3600 or seen >= 5000:
                break
        return None

    async def state(self, batch_id: str) -> BatchState:
        batch = await self.client.batches.retrieve(batch_id)
        counts = batch.request_counts.model_dump() if batch.request_counts else {}
        ended_at = next((t for t in (batch.completed_at, batch.expired_at, batch.cancelled_at, batch.failed_at) if t),
                        None)
        problem = "; ".join(f"{e.code}: {e.message}" for e in (batch.errors.data or [])) if batch.errors else ""
        self._files[batch_id] = (batch.output_file_id, batch.error_file_id)
        return BatchState(batch.id, batch.status, batch.status in ("completed", "failed", "expired", "cancelled"),
                          counts, float(ended_at) if ended_at else None, problem)

    async def _lines(self, file_id: str | None, items: int) -> AsyncIterator[dict[str, Any]]:
        if not file_id:
            return
        url = f"{str(self.client.base_url).rstrip('/')}/files/{file_id}/content"
        async for line in bounded_lines(url, {"Authorization": f"Bearer {self.client.api_key}"}, items,
                                        self.model.request_timeout_s):
            yield line

    async def results(self, state: BatchState, requests: dict[str, ChatRequest]) -> AsyncIterator[ItemResult]:
        output_id, error_id = self._files.get(state.id, (None, None))
        for file_id in (output_id, error_id):
            async for line in self._lines(file_id, len(requests)):
                custom_id = str(line.get("custom_id"))
                request = requests.get(custom_id)
                if request is None:
                    continue
                response, error = line.get("response"), line.get("error")
                response = response if isinstance(response, dict) else {}
                body = response.get("body")
                if response.get("status_code") == 200 and isinstance(body, dict) and not error:
                    try:
                        check_answer(body)
                        yield ItemResult(custom_id, parse_chat_completion(body, 0.0, request.stop, request))
                    except AttemptFailed as exc:
                        yield _failed(custom_id, exc.kind, exc.detail)
                    except RequestFailed as exc:
                        yield ItemResult(custom_id, exc)
                    continue
                if isinstance(error, dict):
                    code = str(error.get("code") or "error")
                    yield _failed(custom_id, "expired" if code == "batch_expired" else "batch_error",
                                  f"{code}: {str(error.get('message'))[:300]}")
                else:
                    body_error = body.get("error") if isinstance(body, dict) else None
                    message = body_error.get("message") if isinstance(body_error, dict) else body_error
                    yield _failed(custom_id, "batch_error", f"HTTP {response.get('status_code')}: {str(message)[:300]}",
                                  status=response.get("status_code") if isinstance(response.get("status_code"), int) else None)

    async def aclose(self) -> None:
        await self.client.close()


class AnthropicBatches:
    name = "Anthropic Message Batches"

    def __init__(self, model: ModelConfig, base_url: str | None):
        import anthropic

        self.model = model
        self.client = anthropic.AsyncAnthropic(api_key=resolve_api_key(model),
                                               base_url=normalize_base_url(base_url or model.base_url),
                                               max_retries=CONTROL_RETRIES, timeout=model.request_timeout_s)

    async def submit(self, items: list[tuple[str, ChatRequest]], tag: str) -> str:
        requests = []
        for custom_id, request in items:
            kwargs = build_message_kwargs(self.model, request)
            params = {k: v for k, v in kwargs.items() if k != "extra_body"} | (kwargs.get("extra_body") or {})
            requests.append({"custom_id": custom_id, "params": params})
        # Not retried (a create whose answer was lost may have made a batch); no metadata to find it by.
        batch = await self.client.with_options(max_retries=0).messages.batches.create(requests=requests)
        return batch.id

    async def find(self, tag: str, submitted_at: float) -> str | None:
        return None  # Message Batches carry no metadata: a batch created by a killed run cannot be told apart

    async def state(self, batch_id: str) -> BatchState:
        batch = await self.client.messages.batches.retrieve(batch_id)
        ended_at = batch.ended_at.timestamp() if batch.ended_at else None
        return BatchState(batch.id, batch.processing_status, batch.processing_status == "ended",
                          batch.request_counts.model_dump(), ended_at)

    async def results(self, state: BatchState, requests: dict[str, ChatRequest]) -> AsyncIterator[ItemResult]:
        batch = await self.client.messages.batches.retrieve(state.id)
        url = str(batch.results_url or "")
        given, configured = urlsplit(url), urlsplit(str(self.client.base_url))
        if (given.scheme, given.netloc) != (configured.scheme, configured.netloc):
            raise RequestFailed(f"batch {state.id}: results_url {url[:200]!r} is not on {self.client.base_url}; "
                                f"the key is sent nowhere else", kind="batch_results")
        headers = {"x-api-key": self.client.api_key or "",
                   "anthropic-version": str(self.client.default_headers.get("anthropic-version") or "2023-06-01")}
        async for line in bounded_lines(url, headers, len(requests), self.model.request_timeout_s):
            custom_id = str(line.get("custom_id"))
            result = line.get("result") if isinstance(line.get("result"), dict) else {}
            request = requests.get(custom_id)
            if request is None:
                continue
            kind = result.get("type")
            if kind == "succeeded" and isinstance(result.get("message"), dict):
                try:
                    yield ItemResult(custom_id, parse_message(result["message"], 0.0, request.stop, request))
                except RequestFailed as exc:
                    yield ItemResult(custom_id, exc)
            elif kind == "errored":
                error = (result.get("error") or {}).get("error") if isinstance(result.get("error"), dict) else None
                error = error if isinstance(error, dict) else {}
                yield _failed(custom_id, "batch_error", f"{error.get('type', 'error')}: {str(error.get('message'))[:300]}")
            else:  # canceled, expired, or something unreadable
                yield _failed(custom_id, "expired" if kind == "expired" else "canceled", str(kind)[:40])

    async def aclose(self) -> None:
        await self.client.close()


def batch_api(model: ModelConfig, base_url: str | None) -> BatchAPI:
    if model.provider == "anthropic":
        return AnthropicBatches(model, base_url)
    return OpenAIBatches(model, base_url or model.base_url or "")


def new_tag() -> str:
    return uuid.uuid4().hex[:12]
