"""Joining lm-eval's per-sample output with responses: scores, failure counts, cost per correct."""

import pytest

from harness.endpoints.adapter import ResponseRecord
from harness.config import ConfigError, TaskConfig
from harness.endpoints.base import Completion, Usage
from harness.scoring.scores import score_run

CFG = TaskConfig(name="t", lm_eval_task="grp", metric="exact_match", filter="flexible")


def _sample(doc_id, filter_name, extracted, score):
    return {"doc_id": doc_id, "filter": filter_name, "filtered_resps": [extracted], "exact_match": score,
            "metrics": ["exact_match"], "doc_hash": f"d{doc_id}", "prompt_hash": f"p{doc_id}", "target": "42"}


def _record(task, doc_id, finish="stop", cost=0.01, cached=False, tokens=(100, 10)):
    completion = Completion(f"answer {doc_id}", None, finish, Usage(tokens[0], 0, tokens[1], 0), "m", None, 0.5)
    return ResponseRecord(task, doc_id, f"sha256:{task}{doc_id}", 0, f"k{task}{doc_id}", completion, cost,
                          from_cache=cached)


# task a: flexible gets docs 0,1,2 right; strict only doc 0; doc 3 has no number at all.
SAMPLES = {
    "a": [_sample(0, "flexible", "42", 1.0), _sample(0, "strict", "42", 1.0),
          _sample(1, "flexible", "42", 1.0), _sample(1, "strict", "[invalid]", 0.0),
          _sample(2, "flexible", "42", 1.0), _sample(2, "strict", "[invalid]", 0.0),
          _sample(3, "flexible", "[invalid]", 0.0), _sample(3, "strict", "[invalid]", 0.0)],
    "b": [_sample(0, "flexible", "7", 0.0), _sample(0, "strict", "7", 0.0)],
    "empty": [],
}
RECORDS = {
    ("a", 0): [_record("a", 0)], ("a", 1): [_record("a", 1, cached=True)],
    ("a", 2): [_record("a", 2)], ("a", 3): [_record("a", 3, finish="length", tokens=(100, 256))],
    ("b", 0): [_record("b", 0, cost=0.02)],
}


def test_leaf_scores_counts_and_costs():
    scores, rows = score_run(SAMPLES, RECORDS, CFG)
    a = next(s for s in scores if s.task == "a").to_summary()
    assert a["value"] == 0.75 and a["n"] == 4
    assert a["by_filter"] == {"flexible": 0.75, "strict": 0.25}
    assert a["n_truncated"] == 1 and a["n_extraction_failed"] == 1 and a["n_missing_response"] == 0
    assert a["value_excluding_failures"] == 1.0 and a["n_excluding_failures"] == 3  # doc 3 failed both ways
    assert a["usage"] == {"input_tokens": 400, "cached_input_tokens": 0, "output_tokens": 286, "reasoning_tokens": 0,
                          "cache_write_input_tokens": 0}
    assert a["cost_usd"] == pytest.approx(0.04)
    assert a["cost_usd_new"] == pytest.approx(0.03)  # doc 1 came from the cache
    assert a["cost_per_correct_usd"] == pytest.approx(0.04 / 3)
    assert a["cost_per_sample_usd"] == pytest.approx(0.01)
    assert len(rows) == 5 and {r["task"] for r in rows} == {"a", "b"}  # the empty task has no rows
    row3 = next(r for r in rows if r["task"] == "a" and r["doc_id"] == 3)
    assert row3["truncated"] and row3["extraction_failed"] and row3["score"] == 0.0
    assert row3["scores"] == {"flexible": {"exact_match": 0.0}, "strict": {"exact_match": 0.0}}


def test_group_pools_the_samples_of_its_tasks():
    scores, _ = score_run(SAMPLES, RECORDS, CFG)
    assert [s.task for s in scores] == ["a", "b", "grp"]
    grp = scores[-1].to_summary()
    assert grp["n"] == 5 and grp["value"] == pytest.approx(3 / 5)  # pooled, not the mean of 0.75 and 0
    assert grp["subtasks"] == ["a", "b"]
    assert grp["cost_usd"] == pytest.approx(0.06)
    assert grp["cost_per_correct_usd"] == pytest.approx(0.02)


def test_no_correct_answer_means_no_cost_per_correct():
    scores, _ = score_run({"b": SAMPLES["b"]}, RECORDS, CFG)
    assert scores[0].to_summary()["cost_per_correct_usd"] is None


def test_unknown_headline_filter_is_named():
    cfg = TaskConfig(name="t", lm_eval_task="a", filter="strict-match")
    with pytest.raises(ConfigError, match="strict-match.*flexible"):
        score_run({"a": SAMPLES["a"]}, RECORDS, cfg)
