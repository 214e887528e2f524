"""Scoring hook for gsm8k_chat; the extraction rules live in harness.scoring.extract (shared with the records
and the sensitivity report)."""

from __future__ import annotations

from typing import Any

from harness.scoring.extract import gold_answer, gsm8k_chat, gsm8k_lenient, gsm8k_strict

STAGES = ("final_answer", "last_number", "none")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    response, gold = results[0], gold_answer("gsm8k", doc)
    flexible = gsm8k_chat(response)  # final-answer statement, else the last number
    metrics = {
        "exact_match": float(flexible.answer == gold),
        "exact_match_strict": float(gsm8k_strict(response).answer == gold),
        "exact_match_lenient": float(gsm8k_lenient(response).answer == gold),
    }
    for stage in STAGES:
        metrics[f"extracted_by_{stage}"] = float(flexible.stage == stage)
    return metrics
