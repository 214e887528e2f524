"""Run-vs-baseline comparison on constructed per-item data with known answers, drift alarms and
the exit codes CI gates on."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from harness.records.compare import (EXIT_CANNOT_COMPARE, EXIT_OK, EXIT_REGRESSION, RunRecords, compare_runs, main,
                             paired_test)

ROOT = Path(__file__).resolve().parent.parent


def make_run(results: Path, run_id: str, scores: list[float], served="deepseek-v4-flash", fingerprint="fp1",
             input_price=0.14, docs_sha="d" * 64, model="v4-flash", task="mmlu_pro_official") -> Path:
    folder = results / "runs" / run_id
    folder.mkdir(parents=True)
    rows = [{"task": task, "doc_id": i, "doc_key": f"question_id:{i}", "score": s,
             "system_fingerprint": fingerprint} for i, s in enumerate(scores)]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "run_id": run_id, "model": model, "task": task,
        "endpoint": {"served_model": [served]},
        "pricing": {"input_per_mtok": input_price, "output_per_mtok": 0.28},
        "dataset": {task: {"sha256": docs_sha, "files_sha256": "f" * 64, "revision": "abc"}},
        "tasks": {task: {"value": sum(scores) / len(scores), "n": len(scores), "cost_usd": 0.01 * len(scores),
                         "usage": {"input_tokens": 100 * len(scores), "output_tokens": 10 * len(scores)},
                         "n_truncated": 0, "n_extraction_failed": scores.count(0.0) // 10}},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    time.sleep(0.01)  # distinct mtimes: "previous" is by finish time
    return folder


def test_mcnemar_on_known_discordant_pairs():
    # 100 shared items: 80 right in both, 6 wrong in both, 2 only now right, 12 only before right.
    base = [1.0] * 80 + [0.0] * 6 + [0.0] * 2 + [1.0] * 12
    now = [1.0] * 80 + [0.0] * 6 + [1.0] * 2 + [0.0] * 12
    test = paired_test({str(i): s for i, s in enumerate(now)}, {str(i): s for i, s in enumerate(base)})
    assert (test.only_current_right, test.only_baseline_right) == (2, 12)
    # exact two-sided McNemar = 2 * P(X <= 2), X ~ Bin(14, 1/2) = 2 * (1 + 14 + 91) / 2**14
    assert test.p_value == pytest.approx(2 * 106 / 2**14)
    assert test.delta == pytest.approx(-0.10) and test.method == "exact McNemar"


def test_only_shared_items_are_paired_and_non_binary_scores_use_a_paired_bootstrap():
    now, base = {"a": 0.5, "b": 0.9, "c": 0.1, "x": 1.0}, {"a": 0.4, "b": 0.7, "c": 0.2, "y": 0.0}
    test = paired_test(now, base)
    assert test.n_shared == 3 and test.method == "paired bootstrap"
    assert test.delta == pytest.approx((0.1 + 0.2 - 0.1) / 3)
    assert test.p_value > 0.2  # three noisy items cannot decide


def test_paired_bootstrap_p_against_the_normal_approximation():
    # 400 items, pass@k differences with mean -0.05 and sd ~0.3: z = 0.05 / (0.3/20) = 3.33, p ~ 0.0009
    import numpy as np

    rng = np.random.default_rng(1)
    d = rng.normal(-0.05, 0.3, 400)
    z = abs(d.mean()) / (d.std(ddof=1) / 20)
    expected = 2 * scipy_stats.norm.sf(z)
    from harness.common.stats import paired_bootstrap_p

    assert paired_bootstrap_p(d) == pytest.approx(expected, abs=0.004)
    assert paired_bootstrap_p(rng.normal(0, 0.3, 400)) > 0.05
    assert paired_bootstrap_p([0.0] * 10) == 1.0


def test_a_significant_drop_is_a_regression_and_a_small_one_is_not(tmp_path):
    base = make_run(tmp_path, "base", [1.0] * 92 + [0.0] * 8)
    drop = make_run(tmp_path, "drop", [1.0] * 80 + [0.0] * 20)  # 12 items lost, none gained
    wobble = make_run(tmp_path, "wobble", [0.0] * 2 + [1.0] * 88 + [0.0] * 10)  # 2 points, not significant
    regressed = compare_runs(RunRecords.load(drop), RunRecords.load(base))
    assert regressed.regressed and regressed.tasks[0].test.p_value < 0.001
    assert regressed.tasks[0].cost_usd_delta == pytest.approx(0.0)
    held = compare_runs(RunRecords.load(wobble), RunRecords.load(base))
    assert not held.regressed and held.tasks[0].test.p_value > 0.05


def test_drift_is_reported_even_when_scores_hold(tmp_path):
    base = make_run(tmp_path, "base", [1.0, 0.0] * 50)
    new_snapshot = make_run(tmp_path, "new", [1.0, 0.0] * 50, served="deepseek-v4-flash-2026-11-20",
                            fingerprint="fp2", input_price=0.15, docs_sha="e" * 64)
    comparison = compare_runs(RunRecords.load(new_snapshot), RunRecords.load(base))
    assert not comparison.regressed
    drift = {d.what: (d.baseline, d.current) for d in comparison.drift}
    assert drift["served model id"] == (["deepseek-v4-flash"], ["deepseek-v4-flash-2026-11-20"])
    assert drift["system_fingerprint"] == (["fp1"], ["fp2"])
    assert drift["pricing"][0]["input_per_mtok"] == 0.14 and drift["pricing"][1]["input_per_mtok"] == 0.15
    assert drift["dataset mmlu_pro_official sha256"] == ("d" * 64, "e" * 64)
    assert compare_runs(RunRecords.load(base), RunRecords.load(base)).drift == ()


def test_exit_codes_and_previous_baseline(tmp_path, capsys):
    results = tmp_path / "results"
    make_run(results, "night1", [1.0] * 92 + [0.0] * 8)
    make_run(results, "other-model", [0.0] * 100, model="v4-pro")  # not a baseline for v4-flash
    night2 = make_run(results, "night2", [1.0] * 91 + [0.0] * 9)
    assert main([str(night2), "--results-dir", str(results)]) == EXIT_OK
    assert "night2 vs baseline night1" in capsys.readouterr().out
    night3 = make_run(results, "night3", [1.0] * 75 + [0.0] * 25)
    report = tmp_path / "report.md"
    assert main(["--results-dir", str(results), "--report", str(report)]) == EXIT_REGRESSION  # latest = night3
    assert "night3 vs baseline night2" in report.read_text() and "**yes**" in report.read_text()
    assert json.loads((night3 / "compare.json").read_text())["regressed"] is True
    assert main([str(night3), "--baseline", str(tmp_path / "nowhere")]) == EXIT_CANNOT_COMPARE
    assert main(["--results-dir", str(results), "--suite", "nightly"]) == EXIT_CANNOT_COMPARE  # no such suite run
    first = make_run(tmp_path / "lonely", "only", [1.0])
    assert main([str(first), "--results-dir", str(tmp_path / "lonely")]) == EXIT_CANNOT_COMPARE
    assert "no earlier run" in capsys.readouterr().err


def test_cli_exit_code_reaches_the_shell(tmp_path):
    results = tmp_path / "results"
    make_run(results, "a", [1.0] * 50)
    b = make_run(results, "b", [0.0] * 50)
    proc = subprocess.run([sys.executable, "-m", "harness.compare", str(b), "--results-dir", str(results)],
                          capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), timeout=60)
    assert proc.returncode == EXIT_REGRESSION, proc.stderr


def test_compare_two_real_runs_with_a_planted_regression(mmlu_pro_dir, tmp_path):
    """Two runs through the real pipeline (replays of recorded answers): all right, then all wrong."""
    from harness.common.doc_key import doc_key
    from tests.conftest import MMLU_PRO_TEST, run_harness

    results = tmp_path / "results"
    for name, answer in (("good", "B"), ("bad", "C")):
        recorded = tmp_path / f"{name}.jsonl"
        recorded.write_text("".join(json.dumps({"doc_key": doc_key(r), "response": f"The answer is ({answer})",
                                                "finish_reason": "stop"}) + "\n" for r in MMLU_PRO_TEST))
        proc = run_harness("model=replay", f"model.path={recorded}", "task=mmlu_pro_official",
                           f"task.dataset_path={mmlu_pro_dir}", f"results_dir={results}", "tracking=none")
        assert proc.returncode == 0, proc.stderr[-2000:]
        time.sleep(0.05)
    proc = subprocess.run([sys.executable, "-m", "harness.compare", "--results-dir", str(results)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == EXIT_REGRESSION, proc.stdout + proc.stderr
    assert "| mmlu_pro_official_biology | 0.0 | 100.0 | -100.0 | 1 |" in proc.stdout
    # Pooled over the 14 categories: 14 discordant pairs, exact p = 2 / 2**14.
    comparison = json.loads(next(results.glob("runs/*/compare.json")).read_text())
    whole = next(t for t in comparison["tasks"] if t["task"] == "mmlu_pro_official")
    assert whole["regression"] and whole["test"]["n_shared"] == 14
    assert whole["test"]["p_value"] == pytest.approx(2 / 2**14)
    assert not next(t for t in comparison["tasks"] if t["task"] == "mmlu_pro_official_law")["regression"]
    assert comparison["regressed"] and comparison["drift"] == []
