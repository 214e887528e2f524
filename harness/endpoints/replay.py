"""Re-scoring without an endpoint: answers requests from recorded responses, matched to documents
by their stable key (harness.common.doc_key), never by position.

Reads our own samples.jsonl and the JSON files TIGER-Lab's MMLU-Pro scripts write (a list of
records with the question fields, `question_id`, and the response in `model_outputs`
(evaluate_from_api.py) or `generated_text` (evaluate_from_local.py)).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.common.doc_key import doc_key
from harness.common.exchange import MISSING, ChatRequest, Completion, Usage



@dataclass(frozen=True)
class ReplayReport:
    """How the recorded responses met the documents: nothing dropped silently."""

    n_responses: int
    n_matched: int  # documents requested that had a response
    n_missing: int  # documents requested that had none (scored as failed extractions)
    n_unmatched: int  # responses whose key is no document of the task
    n_unselected: int  # responses for documents outside the selection (e.g. beyond `limit`)
    missing_keys: tuple[str, ...]
    unmatched_keys: tuple[str, ...]

    def to_dict(self, max_keys: int = 50) -> dict[str, Any]:
        return {
            "n_responses": self.n_responses, "n_matched": self.n_matched, "n_missing": self.n_missing,
            "n_unmatched": self.n_unmatched, "n_unselected": self.n_unselected,
            "missing_keys": list(self.missing_keys[:max_keys]), "unmatched_keys": list(self.unmatched_keys[:max_keys]),
        }


def _official_record(record: dict[str, Any], path: Path) -> tuple[str, Completion]:
    """(doc key, completion) from one record of TIGER-Lab's result files."""
    if "question_id" not in record:
        raise ConfigError(f"{path}: a record has no question_id; cannot match it to a document")
    text = record.get("model_outputs", record.get("generated_text"))
    if text is None:
        raise ConfigError(f"{path}: record question_id={record['question_id']} has neither model_outputs "
                          f"nor generated_text")
    return doc_key(record), Completion(str(text), None, "stop", Usage(), record.get("model"), None, 0.0,
                                       usage_reported=False)


def _our_row(row: dict[str, Any], path: Path, line: int) -> tuple[str, Completion]:
    if not row.get("doc_key"):
        raise ConfigError(f"{path}:{line}: no doc_key (written by an older harness); cannot match it to a document")
    usage = row.get("usage") or {}
    return row["doc_key"], Completion(
        row.get("response") or "", row.get("reasoning"), row.get("finish_reason"), Usage(**usage),
        row.get("served_model"), row.get("system_fingerprint"), 0.0, usage_reported=bool(usage))


def _official_files(folder: Path) -> list[Path]:
    """The per-category result files TIGER-Lab's scripts write into one folder (not their summaries)."""
    files = sorted(p for p in folder.glob("*.json") if not p.name.endswith("_summary.json"))
    if not files:
        raise ConfigError(f"model.path={folder} holds no result JSON files")
    return files


def load_recorded(path: str | Path) -> dict[str, list[Completion]]:
    """{doc key: recorded completions, in file order}."""
    return load_recorded_with_preds(path)[0]


def load_recorded_with_preds(path: str | Path) -> tuple[dict[str, list[Completion]], dict[str, str | None]]:
    """(recorded completions by doc key, the answer the recording tool extracted itself, where it
    says: the `pred` of TIGER-Lab's records, so their extraction can be compared item for item)."""
    path = Path(path)
    if path.is_dir():
        recorded: dict[str, list[Completion]] = defaultdict(list)
        preds: dict[str, str | None] = {}
        for file in _official_files(path):
            file_recorded, file_preds = load_recorded_with_preds(file)
            for key, completions in file_recorded.items():
                recorded[key] += completions
            preds.update(file_preds)
        return dict(recorded), preds
    if not path.is_file():
        raise ConfigError(f"model.path={path} is not a file; give a samples.jsonl, an MMLU-Pro result JSON, "
                          f"or a folder of them")
    recorded = defaultdict(list)
    preds = {}
    if path.suffix == ".jsonl":
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                key, completion = _our_row(json.loads(line), path, line_no)
                recorded[key].append(completion)
        return dict(recorded), preds
    data = json.loads(path.read_text(encoding="utf-8"))
    records = data if isinstance(data, list) else [r for rows in data.values() for r in rows]  # {category: [...]}
    for record in records:
        key, completion = _official_record(record, path)
        recorded[key].append(completion)
        if "pred" in record:
            preds[key] = record["pred"]
    return dict(recorded), preds


class ReplayEndpoint:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.identity = f"replay:{self.path.resolve()}"
        self.base_url = f"replay://{self.path.resolve()}"
        self._recorded, self.recorded_preds = load_recorded_with_preds(self.path)
        self._served: dict[str, int] = defaultdict(int)
        self._missing: set[str] = set()

    async def complete(self, request: ChatRequest, doc_key: str | None = None) -> Completion:
        responses = self._recorded.get(doc_key or "", [])
        index = self._served[doc_key or ""]
        if index >= len(responses):
            self._missing.add(doc_key or "")
            return Completion("", None, MISSING, Usage(), None, None, 0.0, usage_reported=False)
        self._served[doc_key or ""] += 1
        return responses[index]

    async def aclose(self) -> None:
        pass

    def pred_agreement(self, extracted: dict[str, str | None], max_keys: int = 50) -> dict[str, Any] | None:
        """How our extraction of each response compares with the answer the recording tool extracted."""
        compared = {k: p for k, p in self.recorded_preds.items() if k in extracted}
        if not compared:
            return None
        disagree = sorted(k for k, pred in compared.items() if pred != extracted[k])
        return {"n_compared": len(compared), "n_agree": len(compared) - len(disagree),
                "disagreeing_keys": disagree[:max_keys]}

    def report(self, all_doc_keys: set[str]) -> ReplayReport:
        keys = set(self._recorded)
        unmatched = sorted(keys - all_doc_keys)
        return ReplayReport(
            n_responses=sum(len(v) for v in self._recorded.values()),
            n_matched=sum(self._served.values()),
            n_missing=len(self._missing),
            n_unmatched=sum(len(self._recorded[k]) for k in unmatched),
            n_unselected=sum(len(self._recorded[k]) for k in (keys & all_doc_keys) - set(self._served)),
            missing_keys=tuple(sorted(self._missing)),
            unmatched_keys=tuple(unmatched),
        )
