"""A stable key for a benchmark document, so a response recorded anywhere (our samples.jsonl, the
official MMLU-Pro scripts' output) can be matched back to its document without trusting order."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def doc_key(doc: Mapping[str, Any]) -> str:
    """`question_id:<id>` where the dataset has one (MMLU-Pro), else a sha256 of the document."""
    if doc.get("question_id") is not None:
        return f"question_id:{doc['question_id']}"
    canonical = json.dumps(dict(doc), sort_keys=True, ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
