"""Loopback fakes of OpenAI's Batch API and Anthropic's Message Batches API, for tests of the batch client.

Shapes follow the providers' documentation (and their official SDKs' types, installed in .venv):
- OpenAI: platform.openai.com/docs/guides/batch and /docs/api-reference/batch (Batch object, list,
  cancel, request input and output lines), /docs/api-reference/files (File object, content).
  Input lines are checked while the batch is `validating`, as upstream: a bad file still creates a
  batch, which then ends `failed` with errors.data [{code, line, message, param}] (codes
  invalid_json_line, duplicate_custom_id, missing_required_parameter, url_mismatch, model_mismatch,
  empty_file); the upload itself only refuses a non-.jsonl file or a wrong purpose (400).
  Output line: {"id": "batch_req_…", "custom_id", "response": {"status_code": 200, "request_id",
  "body": chat.completion}, "error": null}; a request that failed is the same with a 4xx/5xx status
  and {"error": {message, type, param, code}} as body (observed, openai/openai-openapi#302); a request
  not run before expiry is {"response": null, "error": {"code": "batch_expired", "message": …}}.
- Anthropic: platform.claude.com/docs/en/api/creating-message-batches, retrieving-message-batches,
  listing-message-batches, canceling-message-batches, retrieving-message-batch-results, and
  /docs/en/build-with-claude/batch-processing. request_counts stay all `processing` until the batch
  ends; results_url is null until then; result lines are succeeded / errored / canceled / expired.
  `params` are validated asynchronously (a request without model, max_tokens or messages comes back
  errored invalid_request_error), custom_id synchronously (unique, ^[a-zA-Z0-9_-]{1,64}$, 400).
  Not documented, chosen here: results of a batch not yet ended answer 400 invalid_request_error (the
  SDK refuses before asking, as results_url is null), cancelling an ended batch answers 400.

Each fake also answers online (POST /v1/chat/completions, POST /v1/messages; non-streamed) with the
same usage and content, so failed items can be retried online and runs compared. Headers are checked
as upstream: OpenAI `Authorization: Bearer` (401), Anthropic `x-api-key` or `Authorization: Bearer`
(401; the installed anthropic SDK sends an api_key as Bearer) and `anthropic-version` (400, as the real
API answers a missing version).

Nothing runs in the background: every state is computed from the clock (`time.time()`, plus
`clock_offset_s` / `advance()`) and what was fixed at creation (knobs are captured per batch), so a
client killed mid-batch and started again finds the same batch, in the state it would have reached.
Timeline of a batch created at t0 with P = process_after_s: validating until t0+0.2P (OpenAI), item i
of n processed at t0 + P*(0.2 + 0.6*(i+1)/n), finalizing from t0+0.8P, ended at t0+P. With
`expire`, the batch ends expired at t0+P (and reports expires_at = t0+P) having processed the first
floor(expire_keep*n) items. A cancel at c stops processing at c and ends the batch at c+0.2P.
Result files list items in reverse order, as neither API promises input order.

    with OpenAIBatchServer(content_fn=lambda body: "42", fail_ids={"q-3"}) as server:
        ...  # openai.OpenAI(base_url=server.base_url, api_key="sk-x")
        server.uploads, server.batches_created, server.polls, server.online_requests
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.anthropic_server import error_body as anthropic_error_body
from tests.anthropic_server import message_body
from tests.fault_server import chat_body
from tests.loopback_server import LoopbackServer

DAY_S = 24 * 3600
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _hex(*parts: Any, n: int = 24) -> str:
    """A stable id: the same batch and item give the same ids on every read of a result file."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:n]


def openai_error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "param": param, "code": code}},
                             status=status)


def anthropic_error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response(anthropic_error_body(error_type, message), status=status)


class _BatchFake(LoopbackServer):
    """What both fakes share: knobs, records, the clock, and how far a batch has got at a given time."""

    def __init__(self, process_after_s: float = 0.2, fail_ids: set[str] | Callable[[str], bool] | None = None,
                 expire: bool = False, expire_keep: float = 0.5, content_fn: Callable[[Any], str] | None = None,
                 api_key: str | None = None) -> None:
        """`fail_ids` fail in the batch only (online they succeed, so a retry online works); `api_key`
        None accepts any non-empty key."""
        super().__init__()
        self.process_after_s = process_after_s
        self.fail_ids = fail_ids
        self.expire = expire
        self.expire_keep = expire_keep
        self.content_fn = content_fn
        self.api_key = api_key
        self.clock_offset_s = 0.0
        self.batches_created: list[Any] = []  # create payloads, in arrival order
        self.online_requests: list[Any] = []  # online request bodies
        self.polls = 0                        # GETs of one batch
        self._batches: dict[str, dict[str, Any]] = {}  # in creation order

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def advance(self, seconds: float) -> None:
        """Move the fake's clock on (e.g. past a 24 h window) without waiting."""
        with self._lock:
            self.clock_offset_s += seconds

    def text(self, body: Any) -> str:
        return self.content_fn(body) if self.content_fn else "ok"

    def _failing(self, custom_id: str) -> bool:
        if self.fail_ids is None:
            return False
        return self.fail_ids(custom_id) if callable(self.fail_ids) else custom_id in self.fail_ids

    def _new_batch(self, prefix: str, items: list[tuple[str, Any]], **extra: Any) -> dict[str, Any]:
        """Called under the lock. Everything a later read needs is fixed here."""
        now = self.now()
        batch_id = prefix + _hex(now, len(self._batches), id(self))
        p = max(self.process_after_s, 1e-6)
        batch = {"id": batch_id, "t0": now, "p": p, "items": items, "cancel_at": None,
                 "failing": {cid for cid, _ in items if self._failing(cid)}, "expire": self.expire,
                 "kept": math.floor(self.expire_keep * len(items)),
                 "expires_at": now + (p if self.expire else DAY_S), **extra}
        self._batches[batch_id] = batch
        return batch

    @staticmethod
    def _done(batch: dict[str, Any], t: float) -> int:
        """How many items (in input order) were processed by time t."""
        n = len(batch["items"])
        if batch["cancel_at"] is not None:
            t = min(t, batch["cancel_at"])
        k = math.floor(((t - batch["t0"]) / batch["p"] - 0.2) / 0.6 * n + 1e-9) if n else 0
        k = max(0, min(n, k))
        return min(k, batch["kept"]) if batch["expire"] else k

    @staticmethod
    def _end(batch: dict[str, Any]) -> float:
        if batch["cancel_at"] is not None:
            return batch["cancel_at"] + 0.2 * batch["p"]
        if batch.get("problems"):
            return batch["t0"] + 0.2 * batch["p"]
        return batch["t0"] + batch["p"]

    def _page(self, cursor: str | None, limit: int, before: str | None = None) -> tuple[list[dict], bool]:
        """Called under the lock. Newest first; `cursor` (after) / `before` are batch ids."""
        ordered = list(reversed(self._batches.values()))
        ids = [b["id"] for b in ordered]
        if before in ids:
            ordered = ordered[:ids.index(before)]
            return ordered[-limit:], len(ordered) > limit
        if cursor in ids:
            ordered = ordered[ids.index(cursor) + 1:]
        return ordered[:limit], len(ordered) > limit

    @staticmethod
    def _limit(request: web.Request, top: int) -> int | None:
        try:
            limit = int(request.query.get("limit", 20))
        except ValueError:
            return None
        return limit if 1 <= limit <= top else None


class OpenAIBatchServer(_BatchFake):
    """OpenAI Files + Batch API (endpoint /v1/chat/completions) and online chat completions."""

    url_suffix = "/v1"

    def __init__(self, *, prompt_tokens: int = 5, completion_tokens: int = 2, cached_tokens: int = 0,
                 fail_batch: bool | list[dict[str, Any]] = False, fail_status: int = 500, **knobs: Any) -> None:
        """`fail_batch`: the batch fails validation (True: an enqueued-token-limit error, or the
        errors.data entries given); `fail_status`: the status of a failing item (500 or a 4xx)."""
        super().__init__(**knobs)
        self.prompt_tokens, self.completion_tokens, self.cached_tokens = prompt_tokens, completion_tokens, cached_tokens
        self.fail_batch = fail_batch
        self.fail_status = fail_status
        self.uploads: list[dict[str, Any]] = []  # {"id", "filename", "lines": parsed lines (None if not JSON)}
        self._files: dict[str, dict[str, Any]] = {}

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        key = header[len("Bearer "):].strip() if header.startswith("Bearer ") else ""
        denied = None
        if not key:
            denied = openai_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                       "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        elif self.api_key is not None and key != self.api_key:
            denied = openai_error(401, f"Incorrect API key provided: {key[:3]}***.", code="invalid_api_key")
        if denied is not None:  # recorded too: a test may assert what a refused client sent
            with self._lock:
                self._record(request, None)
        return denied

    def completion(self, body: Any, seed: str = "online", created: float | None = None) -> dict[str, Any]:
        answer = chat_body(self.text(body), self.prompt_tokens, self.completion_tokens, id=f"chatcmpl-{_hex(seed)}",
                           model=(body or {}).get("model", "m"), created=int(created or self.now()))
        answer["usage"]["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens, "audio_tokens": 0}
        answer["usage"]["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0}
        return answer

    # --- files ------------------------------------------------------------------------------------

    def _file_object(self, file_id: str) -> dict[str, Any]:
        f = self._files[file_id]
        return {"id": file_id, "object": "file", "bytes": len(f["content"]), "created_at": int(f["created"]),
                "filename": f["filename"], "purpose": f["purpose"], "status": "processed",
                "expires_at": None, "status_details": None}

    async def _upload(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            form = await request.post()
        except ValueError:
            form = {}
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose != "batch":
            return openai_error(400, f"'{purpose}' is not one of ['assistants', 'batch', 'fine-tune', 'vision', "
                                     "'user_data'] - 'purpose'", param="purpose")
        if not isinstance(upload, web.FileField):
            return openai_error(400, "No file was provided.", param="file")
        if not upload.filename.endswith(".jsonl"):
            return openai_error(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
        content = upload.file.read()
        lines = []
        for raw in content.decode("utf-8", "replace").splitlines():
            try:
                lines.append(json.loads(raw) if raw.strip() else None)
            except ValueError:
                lines.append(None)
        with self._lock:
            self._record(request, None)
            file_id = f"file-{_hex(self.now(), len(self._files), 'upload')}"
            self._files[file_id] = {"content": content, "filename": upload.filename, "purpose": "batch",
                                    "created": self.now()}
            self.uploads.append({"id": file_id, "filename": upload.filename, "lines": lines})
            return web.json_response(self._file_object(file_id))

    async def _file(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        file_id = request.match_info["file_id"]
        with self._lock:
            self._record(request, None)
            if file_id not in self._files:
                return openai_error(404, f"No such File object: {file_id}", param="id")
            if request.path.endswith("/content"):
                return web.Response(body=self._files[file_id]["content"], content_type="application/octet-stream")
            return web.json_response(self._file_object(file_id))

    # --- batches ----------------------------------------------------------------------------------

    @staticmethod
    def _problems(content: bytes, endpoint: str) -> list[dict[str, Any]]:
        """What the `validating` step finds in an input file (errors.data entries)."""
        def problem(code: str, line: int | None, message: str, param: str | None = None) -> dict[str, Any]:
            return {"code": code, "line": line, "message": message, "param": param}

        raw_lines = [raw for raw in content.decode("utf-8", "replace").splitlines() if raw.strip()]
        if not raw_lines:
            return [problem("empty_file", None, "The batch input file is empty.")]
        seen, models = set(), set()
        for number, raw in enumerate(raw_lines, 1):
            try:
                line = json.loads(raw)
            except ValueError:
                return [problem("invalid_json_line", number, "This line is not parseable as valid JSON.")]
            if not isinstance(line, dict):
                return [problem("invalid_json_line", number, "This line is not parseable as valid JSON.")]
            for field in ("custom_id", "method", "url", "body"):
                if field not in line:
                    return [problem("missing_required_parameter", number,
                                    f"Missing required parameter: '{field}'.", field)]
            if line["custom_id"] in seen:
                return [problem("duplicate_custom_id", number, "The custom_id for this request is a duplicate of "
                                "another request. The custom_id parameter must be unique for each request in a "
                                "batch.", "custom_id")]
            seen.add(line["custom_id"])
            if line["method"] != "POST":
                return [problem("invalid_request", number, "The method must be POST.", "method")]
            if line["url"] != endpoint:
                return [problem("url_mismatch", number, "The provided URL does not match the batch endpoint.", "url")]
            models.add((line["body"] or {}).get("model") if isinstance(line["body"], dict) else None)
            if len(models) > 1:
                return [problem("model_mismatch", number, "All requests in a batch must use the same model.",
                                "body.model")]
        return []

    async def _create(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        payload, arrived = await self._read_json(request)
        with self._lock:
            self._record(request, payload, arrived)
            if not isinstance(payload, dict):
                return openai_error(400, "We could not parse the JSON body of your request.")
            self.batches_created.append(payload)
            file_id = payload.get("input_file_id")
            if file_id not in self._files or self._files[file_id]["purpose"] != "batch":
                return openai_error(400, f"Invalid 'input_file_id': '{file_id}'.", param="input_file_id")
            endpoint = payload.get("endpoint")
            if endpoint not in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/completions"):
                return openai_error(400, f"Invalid value: '{endpoint}'.", param="endpoint")
            if endpoint != "/v1/chat/completions":
                return openai_error(400, f"This fake batches /v1/chat/completions only, not {endpoint}.",
                                    param="endpoint")
            if payload.get("completion_window") != "24h":
                return openai_error(400, "Invalid value: completion_window must be '24h'.", param="completion_window")
            content = self._files[file_id]["content"]
            problems = self._problems(content, endpoint)
            if not problems and self.fail_batch:
                problems = self.fail_batch if isinstance(self.fail_batch, list) else [{
                    "code": "token_limit_exceeded", "line": None, "param": None,
                    "message": "Enqueued token limit reached for this model in organization org-fake. "
                               "Please try again once some in_progress batches have been completed."}]
            items = [] if problems else [(line["custom_id"], line["body"])
                                         for line in map(json.loads, filter(str.strip, content.decode().splitlines()))]
            batch = self._new_batch("batch_", items, problems=problems, input_file_id=file_id, endpoint=endpoint,
                                    metadata=payload.get("metadata"), fail_status=self.fail_status,
                                    model=items[0][1].get("model") if items else None)
            return web.json_response(self._view(batch))

    def _status(self, batch: dict[str, Any], now: float) -> str:
        t0, p = batch["t0"], batch["p"]
        if now >= self._end(batch):
            if batch["problems"]:
                return "failed"
            return "cancelled" if batch["cancel_at"] is not None else "expired" if batch["expire"] else "completed"
        if batch["cancel_at"] is not None:
            return "cancelling"
        if now < t0 + 0.2 * p:
            return "validating"
        return "finalizing" if now >= t0 + 0.8 * p and not batch["expire"] else "in_progress"

    def _lines(self, batch: dict[str, Any]) -> tuple[list[dict], list[dict]]:
        """The output and error files of an ended batch: (successful lines, failed lines)."""
        out, err = [], []
        done, status = self._done(batch, self._end(batch)), self._status(batch, self._end(batch))
        for i, (custom_id, body) in reversed(list(enumerate(batch["items"]))):
            line = {"id": f"batch_req_{_hex(batch['id'], i)}", "custom_id": custom_id}
            if i >= done:
                if status == "expired":
                    err.append({**line, "response": None, "error": {
                        "code": "batch_expired",
                        "message": "This request could not be executed before the completion window expired."}})
                continue  # cancelled before it ran: in neither file
            processed = batch["t0"] + batch["p"] * (0.2 + 0.6 * (i + 1) / len(batch["items"]))
            request_id = _hex("req", batch["id"], i, n=32)
            bad = not isinstance(body, dict) or not body.get("model") or not body.get("messages")
            if custom_id in batch["failing"] or bad:
                code = 400 if bad else batch["fail_status"]
                error = ({"message": "you must provide a model parameter and messages", "type": "invalid_request_error",
                          "param": None, "code": None} if bad or code < 500 else
                         {"message": "The server had an error while processing your request. Sorry about that!",
                          "type": "server_error", "param": None, "code": None})
                err.append({**line, "response": {"status_code": code, "request_id": request_id,
                                                 "body": {"error": error}}, "error": None})
            else:
                out.append({**line, "response": {"status_code": 200, "request_id": request_id,
                                                 "body": self.completion(body, f"{batch['id']}/{i}", processed)},
                            "error": None})
        return out, err

    def _view(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Called under the lock: the Batch object as it stands now."""
        now, t0, p, end = self.now(), batch["t0"], batch["p"], self._end(batch)
        status = self._status(batch, now)
        ended = status in ("failed", "cancelled", "expired", "completed")

        def at(t: float | None, when: bool = True) -> int | None:
            return int(t) if t is not None and when and now >= t else None

        n, done = len(batch["items"]), self._done(batch, now)
        failed = sum(1 for cid, _ in batch["items"][:done] if cid in batch["failing"])
        completed = done - failed
        output_id = error_id = usage = None
        if ended and not batch["problems"]:
            out, err = self._lines(batch)
            completed, failed = len(out), len(err)  # an expired batch's unrun requests count as failed
            for kind, lines in (("output", out), ("error", err)):
                if lines:
                    file_id = f"file-{_hex(batch['id'], kind)}"
                    self._files.setdefault(file_id, {
                        "content": "".join(json.dumps(line) + "\n" for line in lines).encode(),
                        "filename": f"{batch['id']}_{kind}.jsonl", "purpose": "batch_output", "created": end})
                    output_id, error_id = (file_id, error_id) if kind == "output" else (output_id, file_id)
            usage = {"input_tokens": len(out) * self.prompt_tokens,
                     "input_tokens_details": {"cached_tokens": len(out) * self.cached_tokens},
                     "output_tokens": len(out) * self.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": len(out) * (self.prompt_tokens + self.completion_tokens)}
        in_progress = not batch["problems"] and (batch["cancel_at"] is None or batch["cancel_at"] >= t0 + 0.2 * p)
        return {
            "id": batch["id"], "object": "batch", "endpoint": batch["endpoint"], "model": batch["model"],
            "errors": {"object": "list", "data": batch["problems"]} if batch["problems"] and ended else None,
            "input_file_id": batch["input_file_id"], "completion_window": "24h", "status": status,
            "output_file_id": output_id, "error_file_id": error_id, "created_at": int(t0),
            "in_progress_at": at(t0 + 0.2 * p, in_progress), "expires_at": int(batch["expires_at"]),
            "finalizing_at": at(t0 + 0.8 * p, status in ("finalizing", "completed")),
            "completed_at": at(end, status == "completed"), "failed_at": at(end, status == "failed"),
            "expired_at": at(end, status == "expired"), "cancelling_at": at(batch["cancel_at"]),
            "cancelled_at": at(end, status == "cancelled"),
            "request_counts": {"total": n, "completed": completed, "failed": failed},
            "usage": usage, "metadata": batch["metadata"],
        }

    async def _batch(self, request: web.Request) -> web.Response:
        """GET /v1/batches/{id} and POST /v1/batches/{id}/cancel."""
        if (denied := self._auth(request)) is not None:
            return denied
        batch_id = request.match_info["batch_id"]
        with self._lock:
            self._record(request, None)
            batch = self._batches.get(batch_id)
            if batch is None:
                return openai_error(404, f"No batch found with id '{batch_id}'.")
            if request.method == "GET":
                self.polls += 1
            else:
                status = self._status(batch, self.now())
                if status not in ("validating", "in_progress", "cancelling"):
                    return openai_error(400, f"Cannot cancel a batch with status '{status}'.")
                if batch["cancel_at"] is None:
                    batch["cancel_at"] = self.now()
            return web.json_response(self._view(batch))

    async def _list(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if (limit := self._limit(request, 100)) is None:
            return openai_error(400, "Invalid 'limit': must be between 1 and 100.", param="limit")
        with self._lock:
            self._record(request, None)
            page, has_more = self._page(request.query.get("after"), limit)
            data = [self._view(b) for b in page]
        return web.json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None, "has_more": has_more})

    async def _chat(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        payload, arrived = await self._read_json(request)
        with self._lock:
            self._record(request, payload, arrived)
            self.online_requests.append(payload)
        if not isinstance(payload, dict) or not payload.get("model") or not payload.get("messages"):
            return openai_error(400, "you must provide a model parameter and messages")
        if payload.get("stream"):
            return openai_error(400, "this fake answers non-streamed requests only", param="stream")
        return web.json_response(self.completion(payload, f"online/{len(self.online_requests)}"))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{file_id}", self._file)
        app.router.add_get("/v1/files/{file_id}/content", self._file)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches", self._list)
        app.router.add_get("/v1/batches/{batch_id}", self._batch)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self._batch)
        app.router.add_post("/v1/chat/completions", self._chat)


class AnthropicBatchServer(_BatchFake):
    """Anthropic Message Batches and online Messages. base_url has no /v1 (the SDK adds it)."""

    url_suffix = ""

    def __init__(self, *, input_tokens: int = 12, output_tokens: int = 3, cache_read_input_tokens: int = 0,
                 cache_creation_input_tokens: int = 0, fail_error_type: str = "api_error", **knobs: Any) -> None:
        super().__init__(**knobs)
        self.usage = {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_read_input_tokens": cache_read_input_tokens,
                      "cache_creation_input_tokens": cache_creation_input_tokens}
        self.fail_error_type = fail_error_type

    def _auth(self, request: web.Request) -> web.Response | None:
        """The key as `x-api-key` (the documented header) or `Authorization: Bearer` (what the
        anthropic SDK 2.x sends for an api_key); a missing `anthropic-version` is a 400 upstream."""
        bearer = request.headers.get("Authorization", "")
        key = request.headers.get("x-api-key") or (bearer[len("Bearer "):].strip() if bearer.startswith("Bearer ") else "")
        denied = None
        if not key:
            denied = anthropic_error(401, "authentication_error", "x-api-key header is required")
        elif self.api_key is not None and key != self.api_key:
            denied = anthropic_error(401, "authentication_error", "invalid x-api-key")
        elif not request.headers.get("anthropic-version"):
            denied = anthropic_error(400, "invalid_request_error", "anthropic-version: header is required")
        if denied is not None:
            with self._lock:
                self._record(request, None)
        return denied

    def message(self, params: Any, seed: str = "online") -> dict[str, Any]:
        body = message_body(self.text(params), model=(params or {}).get("model", "claude"), usage={
            **self.usage, "cache_creation": {"ephemeral_5m_input_tokens": self.usage["cache_creation_input_tokens"],
                                             "ephemeral_1h_input_tokens": 0}, "service_tier": "batch"
            if seed != "online" else "standard"})
        return {**body, "id": f"msg_{_hex(seed)}"}

    @staticmethod
    def _rfc3339(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")

    def _results(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        done = self._done(batch, self._end(batch))
        lines = []
        for i, (custom_id, params) in reversed(list(enumerate(batch["items"]))):
            if i >= done:
                result: dict[str, Any] = {"type": "canceled" if batch["cancel_at"] is not None else "expired"}
            elif not isinstance(params, dict) or not all(params.get(k) for k in ("model", "max_tokens", "messages")):
                missing = [k for k in ("model", "max_tokens", "messages") if not (params or {}).get(k)]
                result = {"type": "errored", "error": anthropic_error_body(
                    "invalid_request_error", f"{missing[0]}: Field required")}
            elif custom_id in batch["failing"]:
                result = {"type": "errored", "error": anthropic_error_body(self.fail_error_type, "Internal server error")}
            else:
                result = {"type": "succeeded", "message": self.message(params, f"{batch['id']}/{i}")}
            lines.append({"custom_id": custom_id, "result": result})
        return lines

    def _view(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Called under the lock: the MessageBatch object as it stands now."""
        now = self.now()
        ended = now >= self._end(batch)
        counts = {"processing": len(batch["items"]), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:  # counts move out of `processing` only once the whole batch has ended (documented)
            counts["processing"] = 0
            for line in self._results(batch):
                counts[line["result"]["type"]] += 1
        return {
            "id": batch["id"], "type": "message_batch",
            "processing_status": "ended" if ended else "canceling" if batch["cancel_at"] is not None else "in_progress",
            "request_counts": counts, "ended_at": self._rfc3339(self._end(batch) if ended else None),
            "created_at": self._rfc3339(batch["t0"]), "expires_at": self._rfc3339(batch["expires_at"]),
            "cancel_initiated_at": self._rfc3339(batch["cancel_at"]), "archived_at": None,
            "results_url": f"http://127.0.0.1:{self.port}/v1/messages/batches/{batch['id']}/results" if ended else None,
        }

    async def _create(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        payload, arrived = await self._read_json(request)
        with self._lock:
            self._record(request, payload, arrived)
            if isinstance(payload, dict):
                self.batches_created.append(payload)
            requests = payload.get("requests") if isinstance(payload, dict) else None
            if not isinstance(requests, list) or not requests:
                return anthropic_error(400, "invalid_request_error", "requests: Field required (a non-empty list)")
            if len(requests) > 100_000:
                return anthropic_error(400, "invalid_request_error", "requests: at most 100000 requests per batch")
            seen: set[str] = set()
            for i, item in enumerate(requests):
                custom_id = item.get("custom_id") if isinstance(item, dict) else None
                if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
                    return anthropic_error(400, "invalid_request_error", f"requests.{i}.custom_id: String should "
                                           f"match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
                if custom_id in seen:
                    return anthropic_error(400, "invalid_request_error", f"requests.{i}: Found duplicate custom_id "
                                           f"'{custom_id}'; custom_id must be unique within a batch.")
                if not isinstance(item.get("params"), dict):
                    return anthropic_error(400, "invalid_request_error", f"requests.{i}.params: Field required")
                seen.add(custom_id)
            batch = self._new_batch("msgbatch_", [(r["custom_id"], r["params"]) for r in requests])
            return web.json_response(self._view(batch))

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        """GET a batch, POST .../cancel, GET .../results."""
        if (denied := self._auth(request)) is not None:
            return denied
        batch_id = request.match_info["batch_id"]
        with self._lock:
            self._record(request, None)
            batch = self._batches.get(batch_id)
            if batch is None:
                return anthropic_error(404, "not_found_error", f"No message batch found with id '{batch_id}'")
            ended = self.now() >= self._end(batch)
            if request.path.endswith("/results"):
                if not ended:
                    return anthropic_error(400, "invalid_request_error",
                                           f"Message batch {batch_id} has not finished processing; results are "
                                           "available once processing_status is 'ended'")
                body = "".join(json.dumps(line) + "\n" for line in self._results(batch))
                return web.Response(text=body, content_type="application/x-jsonl")
            if request.method == "GET":
                self.polls += 1
            elif ended:
                return anthropic_error(400, "invalid_request_error",
                                       f"Message batch {batch_id} has already ended and cannot be canceled")
            elif batch["cancel_at"] is None:
                batch["cancel_at"] = self.now()
            return web.json_response(self._view(batch))

    async def _list(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if (limit := self._limit(request, 1000)) is None:
            return anthropic_error(400, "invalid_request_error", "limit: must be between 1 and 1000")
        with self._lock:
            self._record(request, None)
            page, has_more = self._page(request.query.get("after_id"), limit, request.query.get("before_id"))
            data = [self._view(b) for b in page]
        return web.json_response({"data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    async def _messages(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        payload, arrived = await self._read_json(request)
        with self._lock:
            self._record(request, payload, arrived)
            self.online_requests.append(payload)
        missing = [k for k in ("model", "max_tokens", "messages") if not (payload or {}).get(k)]
        if not isinstance(payload, dict) or missing:
            return anthropic_error(400, "invalid_request_error", f"{(missing or ['body'])[0]}: Field required")
        if payload.get("stream"):
            return anthropic_error(400, "invalid_request_error", "this fake answers non-streamed requests only")
        return web.json_response(self.message(payload), headers={"request-id": f"req_{_hex(arrived)}"})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/batches", self._create)
        app.router.add_get("/v1/messages/batches", self._list)
        app.router.add_get("/v1/messages/batches/{batch_id}", self._batch)
        app.router.add_post("/v1/messages/batches/{batch_id}/cancel", self._batch)
        app.router.add_get("/v1/messages/batches/{batch_id}/results", self._batch)
