"""Re-scoring an output file in the official MMLU-Pro format through the official protocol: the
extraction item for item, the accuracy, their random-fallback summary number, the sensitivity
spread, and missing / extra records counted."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import MMLU_PRO_CATEGORIES, MMLU_PRO_README, run_harness


def _row(qid, category, options, answer_index, cot=""):
    return {"question_id": qid, "question": f"Question {qid} about {category}?", "options": options,
            "answer": "ABCDEFGHIJ"[answer_index], "answer_index": answer_index, "cot_content": cot,
            "category": category, "src": "fixture"}


# One test question per category; every answer is B. Question 4 has 3 options: TIGER-Lab's fallback
# (random.seed(12345); randint(0, n - 1)) draws index 1 = B for n = 3, and index 3 = D for n = 4.
TEST_ROWS = [_row(i, c, ["w", "x", "y"] if i == 4 else ["w", "x", "y", "z"], 1)
             for i, c in enumerate(MMLU_PRO_CATEGORIES)]
VALIDATION_ROWS = [_row(100 + i, c, ["p", "q", "r", "s"], 1, "A: Let's think step by step. The answer is (B).")
                   for i, c in enumerate(MMLU_PRO_CATEGORIES)]

# (response, official extraction, its stage); question 13 gets no record at all.
OUTPUTS = {
    0: ("Step by step... The answer is (B).", "B", "answer_is"),
    1: ("The answer is (C). On reflection, the answer is (B).", "C", "answer_is"),  # first match wins
    2: ("Reasoning.\n**Answer: B**", "B", "answer_colon"),  # their ** stripping
    3: ("I think option D is right", "D", "last_letter"),
    4: ("No idea.", None, "none"),
    5: ("answer: b", None, "none"),  # their letter class is [A-J]: lowercase is a miss
    **{i: ("So the answer is (B)", "B", "answer_is") for i in range(6, 13)},
}


@pytest.fixture
def mmlu_pro_copy(tmp_path):
    folder = tmp_path / "TIGER-Lab" / "MMLU-Pro"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text(MMLU_PRO_README)
    for split, rows in (("test", TEST_ROWS), ("validation", VALIDATION_ROWS)):
        pq.write_table(pa.Table.from_pylist(rows), folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


def test_official_output_file_rescored_item_for_item(mmlu_pro_copy, tmp_path):
    records = [{**TEST_ROWS[qid], "pred": answer, "model_outputs": text} for qid, (text, answer, _) in OUTPUTS.items()]
    records.append({**_row(999, "math", ["a", "b"], 0), "model_outputs": "The answer is (A)"})  # no such document
    output_file = tmp_path / "eval_results.json"
    output_file.write_text(json.dumps(records))
    results = tmp_path / "results"

    proc = run_harness("model=replay", f"model.path={output_file}", "task=mmlu_pro_official",
                       f"task.dataset_path={mmlu_pro_copy}", f"results_dir={results}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = next(results.glob("runs/*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = {r["doc_key"]: r for r in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())}

    for qid, (_, answer, stage) in OUTPUTS.items():
        row = rows[f"question_id:{qid}"]
        assert (row["extracted"], row["extraction_stage"]) == (answer, stage), qid
        assert row["score"] == float(answer == "B")
    assert rows["question_id:13"]["finish_reason"] == "missing_response"
    assert rows["question_id:13"]["extracted"] is None

    whole = summary["tasks"]["mmlu_pro_official"]
    assert whole["n"] == 14
    assert whole["value"] == pytest.approx(9 / 14)  # 0, 2, 6..12 correct; misses count wrong
    assert whole["metrics"]["exact_match_random_fallback"] == pytest.approx(10 / 14)  # + question 4's draw
    assert whole["n_extraction_failed"] == 3 and whole["n_missing_response"] == 1
    assert whole["value_excluding_failures"] == pytest.approx(9 / 11)
    assert whole["extraction_stages"] == {"answer_is": 9, "answer_colon": 1, "last_letter": 1, "none": 3}
    sensitivity = whole["sensitivity"]
    assert sensitivity["official"] == pytest.approx(9 / 14)
    assert sensitivity["strict"] == pytest.approx(8 / 14)  # "**Answer: B**" is not "answer is (B)"
    assert sensitivity["lenient"] > sensitivity["official"]  # question 1's final answer (B) counts
    assert rows["question_id:1"]["sensitivity"] == {"strict": 0.0, "official": 0.0, "lenient": 1.0}
    assert sensitivity["spread"] == pytest.approx(max(sensitivity[k] for k in ("strict", "official", "lenient"))
                                                  - sensitivity["strict"])
    biology = summary["tasks"]["mmlu_pro_official_biology"]
    assert biology["n"] == 1 and biology["value"] == 1.0
    assert summary["replay"]["n_unmatched"] == 1 and summary["replay"]["unmatched_keys"] == ["question_id:999"]
    assert summary["replay"]["n_missing"] == 1 and summary["replay"]["missing_keys"] == ["question_id:13"]
    assert summary["cost_usd"] == 0.0
    # Their own `pred` for each record (set here to what their chain gives) agrees item for item.
    assert summary["replay"]["pred_agreement"] == {"n_compared": 13, "n_agree": 13, "disagreeing_keys": []}


def test_a_folder_of_per_category_result_files_and_a_disagreeing_pred(mmlu_pro_copy, tmp_path):
    folder = tmp_path / "eval_results"
    folder.mkdir()
    for qid, (text, answer, _) in OUTPUTS.items():
        category = TEST_ROWS[qid]["category"].replace(" ", "_")
        pred = "A" if qid == 0 else answer  # a pred that disagrees with the official chain
        (folder / f"{category}_result.json").write_text(json.dumps([{**TEST_ROWS[qid], "pred": pred,
                                                                     "model_outputs": text}]))
    (folder / "math_summary.json").write_text(json.dumps({"math": {"corr": 1, "wrong": 0, "acc": 1.0}}))
    results = tmp_path / "results"
    proc = run_harness("model=replay", f"model.path={folder}", "task=mmlu_pro_official",
                       f"task.dataset_path={mmlu_pro_copy}", f"results_dir={results}", "tracking=none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    assert summary["tasks"]["mmlu_pro_official"]["value"] == pytest.approx(9 / 14)
    assert summary["replay"]["n_matched"] == 13 and summary["replay"]["n_missing"] == 1
    assert summary["replay"]["pred_agreement"] == {"n_compared": 13, "n_agree": 12,
                                                   "disagreeing_keys": ["question_id:0"]}


def test_the_answer_is_read_from_the_final_text_not_the_reasoning(mmlu_pro_copy, tmp_path):
    """A reasoning model's thinking mentions other letters; only the final answer is scored."""
    from harness.common.doc_key import doc_key

    rows = [{"doc_key": doc_key(r), "response": "Final: the answer is (B).",
             "reasoning": "Maybe the answer is (A)... or the answer is (C)?", "finish_reason": "stop",
             "usage": {"input_tokens": 10, "cached_input_tokens": 0, "output_tokens": 30, "reasoning_tokens": 25}}
            for r in TEST_ROWS]
    recorded = tmp_path / "samples.jsonl"
    recorded.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    results = tmp_path / "results"
    proc = run_harness("model=replay", f"model.path={recorded}", "task=mmlu_pro_official",
                       f"task.dataset_path={mmlu_pro_copy}", f"results_dir={results}", "tracking=none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    assert summary["tasks"]["mmlu_pro_official"]["value"] == 1.0
    assert summary["usage"]["reasoning_tokens"] == 25 * 14
    samples = [json.loads(line) for line in next(results.glob("runs/*/samples.jsonl")).read_text().splitlines()]
    assert all(s["reasoning"].startswith("Maybe the answer is (A)") and s["extracted"] == "B" for s in samples)
