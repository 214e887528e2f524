"""Scores from lm-eval's per-sample output, joined with each sample's response, usage and cost.

We recompute each task's mean and interval from lm-eval's per-sample metric values (rather than
taking its aggregate) so that the interval, the failure counts and the cost per correct answer all
rest on the same samples.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from harness.common.exchange import MISSING, ResponseRecord, SampleError, Usage
from harness.config import ConfigError, TaskConfig
from harness.common.doc_key import doc_key
from harness.scoring.extract import SENSITIVITY_RULES, extract, gold_answer
from harness.common.stats import (Estimate, clustered_mean_estimate, clustered_proportion_estimate, mean_estimate,
                                  within_item_share)
from harness.scoring.repeats import Answer, answers_of

LM_EVAL_NO_MATCH = "[invalid]"  # what lm-eval's regex filter yields when nothing matched
# Finish reasons of an answer the model did not finish: the token limit (the endpoints map every
# provider's name for it to "length") or the provider's content filter cutting it.
CUT_OFF = frozenset({"length", "content_filter"})


@dataclass(frozen=True)
class TaskScore:
    task: str
    metric: str
    filter: str
    estimate: Estimate
    n_truncated: int
    n_extraction_failed: int
    n_missing_response: int
    # Documents whose request failed (after retries) or was not sent (budget): not in the headline, which
    # is over the documents that were answered; a re-run of the same command retries them.
    n_errors: int
    # The headline score over samples that were neither truncated, nor failed extraction, nor missing:
    # what the model scores when it does answer (shown beside the headline, never instead of it).
    excluding_failures: Estimate
    by_filter: dict[str, float]
    # How many answers each extraction rule caught, and the score under strict / official / lenient rules.
    extraction_stages: dict[str, int]
    sensitivity: dict[str, float]
    # Every metric the task computes, averaged over the headline filter's samples (e.g. MMLU-Pro's
    # exact_match_random_fallback, the number TIGER-Lab's summary reports).
    metrics: dict[str, float]
    usage: Usage
    cost_usd: float
    cost_usd_new: float
    subtasks: tuple[str, ...] = ()
    # Scored answers: items x repeats when every repeat was scored on its own (estimate.n counts items,
    # the interval is clustered by item), else the items.
    n_samples: int = 0
    # The headline with truncated / unextracted answers and failed requests all wrong (strict) or all
    # right (generous): how much the unscorable answers could move it (used by the verdict gate).
    strict: Estimate | None = None
    generous: Estimate | None = None
    # Of the variance between answers, the share within items (repeats disagreeing): what more repeats
    # can still remove; None without repeats.
    within_item_share: float | None = None
    # Unscorable answers, failed items weighed as all their repeats: the share the verdict gate bounds.
    unscorable_fraction: float = 0.0
    repeats: int = 1  # answers per item (task.repeats), whether scored here or by the task's own metric

    @property
    def n_correct(self) -> float:
        return self.estimate.value * (self.n_samples or self.estimate.n)

    def to_summary(self) -> dict[str, Any]:
        e = self.estimate
        return {
            "metric": self.metric,
            "filter": self.filter,
            "value": e.value,
            "stderr": e.stderr,
            "ci95": list(e.ci95),
            "n": e.n,
            "n_samples": self.n_samples or e.n,
            "repeats": self.repeats,
            "within_item_share": self.within_item_share,
            "unscorable_fraction": self.unscorable_fraction,
            "unscorable_range": {name: {"value": est.value, "ci95": list(est.ci95)}
                                 for name, est in (("strict", self.strict), ("generous", self.generous)) if est},
            "n_truncated": self.n_truncated,
            "n_extraction_failed": self.n_extraction_failed,
            "n_missing_response": self.n_missing_response,
            "n_errors": self.n_errors,
            "value_excluding_failures": self.excluding_failures.value if self.excluding_failures.n else None,
            "n_excluding_failures": self.excluding_failures.n,
            "by_filter": self.by_filter,
            "metrics": self.metrics,
            "extraction_stages": self.extraction_stages,
            "sensitivity": ({**self.sensitivity, "spread": max(self.sensitivity.values()) - min(self.sensitivity.values())}
                            if self.sensitivity else None),
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "cost_usd_new": self.cost_usd_new,
            "cost_per_sample_usd": self.cost_usd / (self.n_samples or e.n) if e.n else None,
            "cost_per_correct_usd": self.cost_usd / self.n_correct if self.n_correct else None,
            **({"subtasks": list(self.subtasks)} if self.subtasks else {}),
        }


@dataclass
class _TaskAccumulator:
    headline: list[float] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)  # the item (doc id) of each headline value: the clusters
    generous: list[float] = field(default_factory=list)  # headline values with unscorable answers counted right
    answered: list[float] = field(default_factory=list)  # headline scores of samples without a failure
    by_filter: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    n_truncated: int = 0
    n_unscorable: int = 0  # answers cut off, not extracted or missing (one answer can be several of these)
    n_extraction_failed: int = 0
    n_missing_response: int = 0
    n_errors: int = 0
    stages: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    metrics: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sensitivity: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    usage: Usage = Usage()
    cost_usd: float = 0.0
    cost_usd_new: float = 0.0

    def absorb(self, other: "_TaskAccumulator") -> None:
        self.headline += other.headline
        self.items += [(id(other), item) for item in other.items]  # items of different tasks stay apart
        self.generous += other.generous
        self.answered += other.answered
        for name, values in other.by_filter.items():
            self.by_filter[name] += values
        self.n_truncated += other.n_truncated
        self.n_unscorable += other.n_unscorable
        self.n_extraction_failed += other.n_extraction_failed
        self.n_missing_response += other.n_missing_response
        self.n_errors += other.n_errors
        for stage, count in other.stages.items():
            self.stages[stage] += count
        for rule, values in other.sensitivity.items():
            self.sensitivity[rule] += values
        for name, values in other.metrics.items():
            self.metrics[name] += values
        self.usage += other.usage
        self.cost_usd += other.cost_usd
        self.cost_usd_new += other.cost_usd_new


def _usage_status(responses: list[ResponseRecord]) -> str | None:
    """The least trustworthy usage among a sample's responses: suspect, then estimated, then reported."""
    statuses = {r.completion.usage_status for r in responses}
    return next((s for s in ("suspect", "estimated", "reported") if s in statuses), None)


def _graded_records(filtered: list[Any]) -> list[dict[str, Any]] | None:
    """The per-response records of a filter that grades (lm-eval logs one list per request)."""
    flat = [r for item in filtered for r in (item if isinstance(item, list) else [item])]
    return [r for r in flat if isinstance(r, dict)] or None


def _pick_filter(available: set[str], wanted: str, task: str) -> str:
    if wanted in available:
        return wanted
    if len(available) == 1:
        return next(iter(available))
    raise ConfigError(f"task '{task}' has no filter '{wanted}' (task.filter); it has {sorted(available)}")


def score_run(
    lm_eval_samples: dict[str, list[dict[str, Any]]],
    records: dict[tuple[str, int], list[ResponseRecord]],
    cfg: TaskConfig,
    errors: dict[tuple[str, int], list[SampleError]] | None = None,
    tasks: dict[str, Any] | None = None,
) -> tuple[list[TaskScore], list[dict[str, Any]]]:
    """(one TaskScore per leaf task, plus one for the group when there are several; sample rows).
    `tasks` (lm-eval Task objects by name) lets every repeat of an item be scored (scoring.repeats)."""
    rows: list[dict[str, Any]] = []
    accumulators: dict[str, _TaskAccumulator] = {}
    chosen_filter: dict[str, str] = {}
    for task, samples in sorted(lm_eval_samples.items()):
        if not samples:
            continue  # a task with no documents has no score, rather than a NaN one
        by_doc: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        for sample in samples:
            by_doc[sample["doc_id"]][sample["filter"]] = sample
        headline_filter = _pick_filter({s["filter"] for s in samples}, cfg.filter, task)
        chosen_filter[task] = headline_filter
        acc = accumulators[task] = _TaskAccumulator()
        for doc_id, per_filter in sorted(by_doc.items()):
            headline = per_filter[headline_filter]
            responses = records.get((task, doc_id), [])
            failed_requests = (errors or {}).get((task, doc_id), [])
            if failed_requests:  # recorded as an error, never scored as a wrong answer
                acc.n_errors += 1
                rows.append(_error_row(task, doc_id, headline, failed_requests, cfg, headline_filter))
                continue
            for answer in answers_of(per_filter, headline_filter, responses, (tasks or {}).get(task)):
                rows.append(_score_answer(acc, task, doc_id, headline, answer, cfg, headline_filter))

    scores = [_task_score(task, acc, cfg.metric, chosen_filter[task], configured_repeats=cfg.repeats)
              for task, acc in accumulators.items()]
    if len(accumulators) > 1:
        group = _TaskAccumulator()
        for acc in accumulators.values():
            group.absorb(acc)
        scores.append(_task_score(cfg.lm_eval_task, group, cfg.metric, cfg.filter, tuple(accumulators), cfg.repeats))
    return scores, rows


def _score_answer(acc: _TaskAccumulator, task: str, doc_id: int, headline: dict[str, Any], answer: Answer,
                  cfg: TaskConfig, headline_filter: str) -> dict[str, Any]:
    """Count one scored unit (an item, or one repeat of it) into the task's totals; its samples.jsonl row."""
    responses = list(answer.responses)
    first = responses[0].completion if responses else None
    text = first.text if first else ""
    if cfg.extractor:  # our protocols: the task's own rule, with the stage that matched
        extraction = extract(cfg.extractor, text)
        extracted, stage, failed = extraction.answer, extraction.stage, not extraction.found
    else:  # lm-eval's own tasks: what its filter kept
        extracted = answer.filtered
        stage, failed = None, extracted == LM_EVAL_NO_MATCH
    acc.stages[stage or "lm_eval_filter"] += 1
    sensitivity: dict[str, float] = {}
    if cfg.answer_family and "doc" in headline:
        gold = gold_answer(cfg.answer_family, headline["doc"])
        for rule, name in SENSITIVITY_RULES[cfg.answer_family].items():
            sensitivity[rule] = float(extract(name, text).answer == gold)
            acc.sensitivity[rule].append(sensitivity[rule])
    metrics = answer.scores[headline_filter]
    score = float(metrics[cfg.metric])
    acc.headline.append(score)
    acc.items.append(doc_id)
    for name, value in metrics.items():
        acc.metrics[name].append(value)
    for name, values in answer.scores.items():
        acc.by_filter[name].append(values[cfg.metric])
    truncated = any(r.completion.finish_reason in CUT_OFF for r in responses)
    missing = not responses or any(r.completion.finish_reason == MISSING for r in responses)
    acc.n_truncated += truncated
    acc.n_extraction_failed += failed
    acc.n_missing_response += missing
    unscorable = truncated or failed or missing
    acc.n_unscorable += unscorable
    if not unscorable:
        acc.answered.append(score)
    acc.generous.append(1.0 if unscorable else score)
    usage = sum((r.completion.usage for r in responses), Usage())
    acc.usage += usage
    acc.cost_usd += sum(r.cost_usd for r in responses)
    acc.cost_usd_new += sum(r.new_cost_usd for r in responses)
    return {
        "task": task,
        "doc_id": doc_id,
        **({"repeat": answer.repeat} if answer.repeat is not None else {}),
        "doc_key": doc_key(headline["doc"]) if "doc" in headline else None,
        "doc_hash": headline["doc_hash"],
        "prompt_hash": headline["prompt_hash"],
        "question": question_of(headline.get("doc")),
        "target": headline["target"],
        "response": first.text if first else None,
        "reasoning": first.reasoning if first else None,
        "extracted": extracted,
        "extraction_stage": stage,
        "extraction_failed": failed,
        # A filter that grades (LiveCodeBench) leaves records, not strings: why each sample passed or failed.
        "graded": _graded_records([answer.filtered] if answer.filtered is not None else []),
        "sensitivity": sensitivity or None,
        "metric": cfg.metric,
        "filter": headline_filter,
        "score": score,
        "scores": answer.scores,
        "finish_reason": first.finish_reason if first else None,
        "truncated": truncated,
        "usage": usage.to_dict(),
        "usage_status": _usage_status(responses),
        "usage_note": next((r.completion.usage_note for r in responses if r.completion.usage_note), None),
        "latency_s": sum(r.completion.latency_s for r in responses),
        "cost_usd": sum(r.cost_usd for r in responses),
        "from_cache": all(r.from_cache for r in responses) if responses else None,
        "served_model": first.served_model if first else None,
        "system_fingerprint": first.system_fingerprint if first else None,
        "cache_keys": [r.cache_key for r in responses],
    }


# Where the benchmarks keep the question: GSM8K and MMLU-Pro `question`, LiveCodeBench `question_content`.
_QUESTION_FIELDS = ("question", "question_content", "problem", "prompt", "input", "query")
QUESTION_CHARS = 2000


def question_of(doc: Any) -> str | None:
    """The document's question, cut to QUESTION_CHARS: what a person reading a sample wants first."""
    if not isinstance(doc, dict):
        return None
    for name in _QUESTION_FIELDS:
        if isinstance(doc.get(name), str):
            return doc[name][:QUESTION_CHARS]
    return None


def _error_row(task: str, doc_id: int, headline: dict[str, Any], failed: list[SampleError], cfg: TaskConfig,
               filter_name: str) -> dict[str, Any]:
    return {
        "task": task, "doc_id": doc_id,
        "doc_key": doc_key(headline["doc"]) if "doc" in headline else None,
        "doc_hash": headline["doc_hash"], "prompt_hash": headline["prompt_hash"],
        "question": question_of(headline.get("doc")), "target": headline["target"], "response": None, "reasoning": None, "extracted": None, "extraction_stage": None, "extraction_failed": False,
        "sensitivity": None, "graded": None, "metric": cfg.metric, "filter": filter_name, "score": None, "scores": {},
        "finish_reason": None, "truncated": False, "usage": Usage().to_dict(), "usage_status": None, "usage_note": None,
        "latency_s": 0.0, "cost_usd": 0.0,
        "from_cache": None, "served_model": None, "system_fingerprint": None,
        "error": [e.to_dict()["error"] for e in failed],
        "cache_keys": [e.cache_key for e in failed],
    }


def _item_estimate(values: list[float], items: list[Any]) -> Estimate:
    """The mean with its interval clustered by item when items carry several answers; n = items.
    0/1 scores: Wilson at the effective number of answers (never a point, never narrower than
    independent answers); other scores in [0, 1]: the cluster-robust t interval, kept in [0, 1]."""
    n_items = len(set(items))
    if len(values) == n_items:
        return mean_estimate(values)
    if all(v in (0.0, 1.0) for v in values):
        return clustered_proportion_estimate(values, items)
    e = clustered_mean_estimate(values, items)
    low, high = e.ci95
    if all(0.0 <= v <= 1.0 for v in values):  # a t interval on few items can pass the score's own bounds
        low, high = max(0.0, low), min(1.0, high)
    return Estimate(e.value, e.stderr, (low, high), n_items)


def _task_score(task: str, acc: _TaskAccumulator, metric: str, filter_name: str,
                subtasks: tuple[str, ...] = (), configured_repeats: int | None = None) -> TaskScore:
    n_items = len(set(acc.items))
    repeats = max(1, round(len(acc.headline) / n_items)) if n_items else 1
    # A task whose metric uses all k answers itself (pass@k) leaves one value per item here.
    answers_per_item = max(repeats, configured_repeats or 1)
    # A failed item weighs as much as an answered one: as many answers as the items' repeats.
    failed = [("failed", i) for i in range(acc.n_errors) for _ in range(repeats)]
    return TaskScore(
        task=task,
        metric=metric,
        filter=filter_name,
        estimate=_item_estimate(acc.headline, acc.items),
        n_samples=len(acc.headline) if repeats > 1 else n_items * answers_per_item,
        repeats=answers_per_item,
        strict=_item_estimate(acc.headline + [0.0] * len(failed), acc.items + failed),
        generous=_item_estimate(acc.generous + [1.0] * len(failed), acc.items + failed),
        unscorable_fraction=((acc.n_unscorable + len(failed)) / (len(acc.headline) + len(failed))
                             if acc.headline or failed else 0.0),
        within_item_share=within_item_share(acc.headline, acc.items),
        n_truncated=acc.n_truncated,
        n_extraction_failed=acc.n_extraction_failed,
        n_missing_response=acc.n_missing_response,
        n_errors=acc.n_errors,
        excluding_failures=mean_estimate(acc.answered),
        by_filter={name: sum(v) / len(v) for name, v in acc.by_filter.items() if v},
        extraction_stages=dict(acc.stages),
        metrics={name: sum(v) / len(v) for name, v in acc.metrics.items() if v},
        sensitivity={rule: sum(v) / len(v) for rule, v in acc.sensitivity.items() if v},
        usage=acc.usage,
        cost_usd=acc.cost_usd,
        cost_usd_new=acc.cost_usd_new,
        subtasks=subtasks,
    )
