"""Crash-safe response cache: SQLite in WAL mode, one committed row per response as it arrives,
so an interrupted run loses nothing it paid for and a re-run sends only what is missing.

Rows hold JSON, never pickles: the file may be shared between users.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from harness.common.exchange import ChatRequest, Completion


def cache_key(endpoint_identity: str, request: ChatRequest) -> str:
    """sha256 over the endpoint identity, served model id, messages, stop and every parameter."""
    payload = json.dumps({"endpoint": endpoint_identity, **request.identity()}, sort_keys=True,
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each put is durable
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is in the WAL file (the OS has it) when put returns, so a killed run
        # loses nothing; only a power cut can lose the last answers, which a re-run buys again. FULL
        # would fsync on every answer, on the event loop (~1 ms each here).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, request TEXT NOT NULL, "
            "completion TEXT NOT NULL, cost_usd REAL NOT NULL, created REAL NOT NULL)"
        )

    def get(self, key: str) -> tuple[Completion, float] | None:
        row = self._db.execute("SELECT completion, cost_usd FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Completion.from_dict(json.loads(row[0])), row[1]

    def put(self, key: str, request: ChatRequest, completion: Completion, cost_usd: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
            (key, _dumps(request.identity()), _dumps(completion.to_dict()), cost_usd, time.time()),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)
