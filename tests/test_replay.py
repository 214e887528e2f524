"""Re-scoring recorded responses: our samples.jsonl and TIGER-Lab's MMLU-Pro result files,
matched by document key, with missing and unmatched responses counted."""

import asyncio
import json

import pytest
from mlflow.tracking import MlflowClient

from harness.config import ConfigError
from harness.common.doc_key import doc_key
from harness.endpoints.base import ChatRequest
from harness.endpoints.replay import MISSING, ReplayEndpoint, load_recorded
from tests.conftest import GSM8K_TEST, run_harness

REQUEST = ChatRequest(messages=({"role": "user", "content": "q"},), model_id="replay")


def _gsm8k_key(i: int) -> str:
    question, answer = GSM8K_TEST[i]
    return doc_key({"question": question, "answer": answer})


def test_doc_key_prefers_question_id_and_hashes_otherwise():
    assert doc_key({"question_id": 70, "question": "x"}) == "question_id:70"
    assert doc_key({"a": 1, "b": 2}) == doc_key({"b": 2, "a": 1}) != doc_key({"a": 1, "b": 3})


def test_official_mmlu_pro_result_file_is_read_by_question_id(tmp_path):
    path = tmp_path / "biology_result.json"
    path.write_text(json.dumps([
        {"question_id": 1, "question": "q1", "options": ["a", "b"], "answer": "B", "pred": "B",
         "model_outputs": "Let's think. The answer is (B)."},
        {"question_id": 2, "question": "q2", "options": ["a", "b"], "answer": "A", "pred": None,
         "generated_text": "I am not sure."},
    ]))
    recorded = load_recorded(path)
    assert recorded["question_id:1"][0].text == "Let's think. The answer is (B)."
    assert recorded["question_id:2"][0].text == "I am not sure."
    assert recorded["question_id:1"][0].usage.input_tokens == 0 and not recorded["question_id:1"][0].usage_reported


def test_records_without_a_key_or_a_response_are_refused(tmp_path):
    no_id = tmp_path / "a.json"
    no_id.write_text(json.dumps([{"question": "q", "model_outputs": "x"}]))
    with pytest.raises(ConfigError, match="no question_id"):
        load_recorded(no_id)
    no_text = tmp_path / "b.json"
    no_text.write_text(json.dumps([{"question_id": 3}]))
    with pytest.raises(ConfigError, match="neither model_outputs nor generated_text"):
        load_recorded(no_text)
    with pytest.raises(ConfigError, match="is not a file"):
        load_recorded(tmp_path / "nothing.jsonl")


def test_report_counts_matched_missing_unmatched_and_unselected(tmp_path):
    path = tmp_path / "samples.jsonl"
    rows = [{"doc_key": k, "response": f"r-{k}", "finish_reason": "stop",
             "usage": {"input_tokens": 5, "cached_input_tokens": 0, "output_tokens": 2, "reasoning_tokens": 0}}
            for k in ("k1", "k2", "k3", "stranger")]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    endpoint = ReplayEndpoint(path)

    async def ask(key):
        return await endpoint.complete(REQUEST, doc_key=key)

    assert asyncio.run(ask("k1")).text == "r-k1"
    assert asyncio.run(ask("k1")).finish_reason == MISSING  # one recorded response, asked twice
    assert asyncio.run(ask("k2")).usage.input_tokens == 5
    assert asyncio.run(ask("k9")).finish_reason == MISSING
    report = endpoint.report({"k1", "k2", "k3", "k9"})
    assert (report.n_responses, report.n_matched, report.n_missing, report.n_unmatched, report.n_unselected) \
        == (4, 2, 2, 1, 1)
    assert report.unmatched_keys == ("stranger",) and set(report.missing_keys) == {"k1", "k9"}


def test_replay_through_the_cli_scores_at_zero_cost(gsm8k_dir, tmp_path):
    results = tmp_path / "results"
    recorded = tmp_path / "samples.jsonl"
    usage = {"input_tokens": 100, "cached_input_tokens": 0, "output_tokens": 20, "reasoning_tokens": 0}
    rows = [
        {"doc_key": _gsm8k_key(0), "response": "3 + 5 = 8.\n#### 8", "finish_reason": "stop", "usage": usage},
        {"doc_key": _gsm8k_key(1), "response": "12 * 3 = 35\n#### 35", "finish_reason": "stop", "usage": usage},
        {"doc_key": _gsm8k_key(3), "response": "#### 120", "finish_reason": "stop", "usage": usage},  # beyond limit
        {"doc_key": "sha256:not-a-document", "response": "#### 1", "finish_reason": "stop", "usage": usage},
    ]
    recorded.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    proc = run_harness("model=replay", f"model.path={recorded}", f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null", "limit=3",
                       "task.num_fewshot=1", f"results_dir={results}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    task = summary["tasks"]["gsm8k"]
    assert task["n"] == 3 and task["value"] == pytest.approx(1 / 3)
    assert task["n_missing_response"] == 1 and task["n_extraction_failed"] == 1  # doc 2: nothing to extract
    assert task["value_excluding_failures"] == pytest.approx(1 / 2)
    assert summary["replay"]["n_matched"] == 2 and summary["replay"]["n_missing"] == 1
    assert summary["replay"]["n_unmatched"] == 1 and summary["replay"]["n_unselected"] == 1
    assert summary["cost_usd"] == 0.0 and summary["usage"]["input_tokens"] == 200
    assert summary["endpoint"]["provider"] == "replay"
    run = MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.data.metrics["gsm8k.exact_match"] == pytest.approx(1 / 3)
    assert run.data.metrics["gsm8k.n_missing_response"] == 1


def test_replay_without_a_path_says_what_to_give(tmp_path):
    proc = run_harness("model=replay", f"results_dir={tmp_path}", "limit=1")
    assert proc.returncode == 2 and "model.path=FILE" in proc.stderr
