"""Every repeat of an item scored on its own (task.repeats=k), by the task's own filters and metric.

Why: lm-eval's `repeats` sends k requests per item, but most tasks' filter pipelines end in
`take_first`, so answers 2..k are paid for and never scored. Each answer is put through the task's
own filter pipelines and `process_results`, one at a time, so every repeat gets exactly the score
the task would give it alone. Tasks whose metric consumes all k answers itself (LiveCodeBench's
pass@k) keep lm-eval's own aggregate: their filter keeps a list, not one answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.common.exchange import ResponseRecord


@dataclass(frozen=True)
class Answer:
    """One scored unit: a whole item (lm-eval's own scores) or one repeat of it (scored here)."""

    responses: tuple[ResponseRecord, ...]
    repeat: int | None  # None: the item as lm-eval scored it
    scores: dict[str, dict[str, float]]  # filter -> metric -> value
    filtered: Any  # the headline filter's output (what was graded)


def keeps_one_answer(sample: dict[str, Any]) -> bool:
    """True when the task's filter reduced the item's answers to one string (take_first)."""
    kept = sample.get("filtered_resps") or []
    return len(kept) == 1 and isinstance(kept[0], str)


def score_each_answer(task: Any, doc: dict[str, Any], texts: list[str], headline_filter: str
                      ) -> list[tuple[dict[str, dict[str, float]], Any]]:
    """Per answer: ({filter: {metric: value}}, the headline filter's output), using the task's own
    filter ensembles (lm-eval FilterEnsemble: a list of filter factories) and process_results."""
    scored = []
    for text in texts:
        per_filter: dict[str, dict[str, float]] = {}
        headline_output = None
        for ensemble in getattr(task, "_filters", []):
            resps: list[Any] = [[text]]
            for make in ensemble.filters:
                resps = list(make().apply(resps, [doc]))
            per_filter[ensemble.name] = {k: float(v) for k, v in task.process_results(doc, [resps[0]]).items()}
            if ensemble.name == headline_filter:
                headline_output = resps[0]
        scored.append((per_filter, headline_output))
    return scored


def answers_of(sample_by_filter: dict[str, dict[str, Any]], headline_filter: str,
               responses: list[ResponseRecord], task: Any | None) -> list[Answer]:
    """The units to score for one item: one per repeat when the task kept only the first of several
    answers and its Task object is at hand; else the item as lm-eval scored it."""
    headline = sample_by_filter[headline_filter]
    ordered = sorted(responses, key=lambda r: r.repeat)
    if task is not None and len(ordered) > 1 and keeps_one_answer(headline) and "doc" in headline:
        scored = score_each_answer(task, headline["doc"], [r.completion.text for r in ordered], headline_filter)
        return [Answer((record,), record.repeat, per_filter, output)
                for record, (per_filter, output) in zip(ordered, scored)]
    scores = {name: {m: float(s[m]) for m in s["metrics"]} for name, s in sample_by_filter.items()}
    kept = headline.get("filtered_resps") or []
    return [Answer(tuple(ordered), None, scores, kept[0] if kept else None)]
