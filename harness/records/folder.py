"""The run folder (contract: results/runs/<run_id>/): config.yaml (redacted), requests.jsonl
streamed as responses arrive, errors.jsonl as requests fail, samples.jsonl once scored, and
summary.json written last and atomically, so its presence means the run finished (`complete` in it
says whether every document was answered)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import yaml

if TYPE_CHECKING:
    from harness.common.exchange import ResponseRecord, SampleError

REDACTED = "***REDACTED***"
# Whole-key matches: `api_key`, `x-api-key`, `access_token`, `password`, not `max_tokens` or `api_key_env`.
_SECRET_KEY = re.compile(r"(^|[_\-.])(api[_\-]?key|secret|token|password|passwd|authorization|bearer|credentials?)$",
                         re.IGNORECASE)


def strip_credentials(url: str | None) -> str | None:
    """A URL without user:password@ and without query strings (some providers take ?key=)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact(obj: Any, key: str = "") -> Any:
    """Values under secret-looking keys replaced; URLs stripped of credentials."""
    if isinstance(obj, dict):
        return {k: redact(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, key) for v in obj]
    if obj is None:
        return obj
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(obj, str) and key.endswith("url"):
        return strip_credentials(obj)
    return obj


class RunFolder:
    """A run's folder. The same run_id again resumes a run that is unfinished or INCOMPLETE in place
    (its previous summary and errors are kept as summary.previous.json / errors.previous.jsonl, so a
    summary.json still means "finished"); a complete run is never overwritten."""

    def __init__(self, results_dir: str | Path, run_id: str):
        self.path = Path(results_dir) / "runs" / run_id
        summary = self.path / "summary.json"
        if summary.exists():
            try:
                complete = json.loads(summary.read_text()).get("complete", True)
            except (OSError, ValueError):
                complete = True
            if complete:
                raise FileExistsError(f"run {run_id} already finished complete ({self.path}); choose another run_id")
            os.replace(summary, self.path / "summary.previous.json")
            if (self.path / "errors.jsonl").exists():
                os.replace(self.path / "errors.jsonl", self.path / "errors.previous.jsonl")
        self.path.mkdir(parents=True, exist_ok=True)
        self._requests: IO[str] | None = None

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def write_config(self, resolved: dict[str, Any]) -> None:
        (self.path / "config.yaml").write_text(yaml.safe_dump(redact(resolved), sort_keys=False))

    def append_response(self, record: ResponseRecord) -> None:
        if self._requests is None:
            self._requests = open(self.path / "requests.jsonl", "a", encoding="utf-8")
        self._requests.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        self._requests.flush()

    def append_error(self, error: SampleError) -> None:
        """errors.jsonl: every request that failed or was not sent, as it happens."""
        with open(self.path / "errors.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(error.to_dict(), ensure_ascii=False) + "\n")

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        tmp = self.path / f"{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        os.replace(tmp, self.path / name)

    def write_samples(self, rows: list[dict[str, Any]]) -> None:
        with open(self.path / "samples.jsonl.tmp", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        os.replace(self.path / "samples.jsonl.tmp", self.path / "samples.jsonl")

    def write_summary(self, summary: dict[str, Any]) -> None:
        tmp = self.path / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
        os.replace(tmp, self.summary_path)

    def close(self) -> None:
        if self._requests is not None:
            self._requests.close()
            self._requests = None
