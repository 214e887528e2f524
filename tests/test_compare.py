"""Run-vs-baseline comparison on constructed per-item data with known answers, drift alarms and
the exit codes CI gates on."""

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from harness.records.compare import (EXIT_CANNOT_COMPARE, EXIT_OK, EXIT_REGRESSION, IMPROVED, NO_CHANGE,
                                     NOT_PROTOCOL, REGRESSED, UNSET, RunRecords, compare_runs, main, paired_test,
                                     render_markdown)

ROOT = Path(__file__).resolve().parent.parent


def make_run(results: Path, run_id: str, scores: list[float], served="deepseek-v4-flash", fingerprint="fp1",
             input_price=0.14, docs_sha="d" * 64, model="v4-flash", task="mmlu_pro_official",
             config: list[str] | None = None) -> Path:
    """A finished run folder; with `config` (Hydra overrides) also the config.yaml a run writes."""
    folder = results / "runs" / run_id
    folder.mkdir(parents=True)
    if config is not None:
        from omegaconf import OmegaConf

        from harness.data import compose_config
        from harness.records.folder import RunFolder

        RunFolder(results, run_id).write_config(OmegaConf.to_container(compose_config(config), resolve=True))
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
    # The delta's interval: flipped share (14/100) * (2 * up share (2/14) - 1), each at its exact bounds.
    up_lo, up_hi = scipy_stats.binomtest(2, 14).proportion_ci(0.95, method="exact")
    flip_lo, flip_hi = scipy_stats.binomtest(14, 100).proportion_ci(0.95, method="exact")
    assert test.delta_ci95 == pytest.approx((flip_hi * (2 * up_lo - 1), flip_lo * (2 * up_hi - 1)))
    assert test.delta_ci95[0] < test.delta < test.delta_ci95[1] < 0  # significant: 0 is outside


def test_the_delta_interval_leaves_out_0_exactly_when_the_test_is_significant():
    for up, down in itertools.product(range(13), repeat=2):
        now = [1.0] * up + [0.0] * down + [1.0] * 10
        base = [0.0] * up + [1.0] * down + [1.0] * 10
        test = paired_test(dict(enumerate(now)), dict(enumerate(base)))
        lo, hi = test.delta_ci95
        assert lo <= test.delta <= hi, (up, down)
        assert (lo > 0 or hi < 0) == (test.p_value < 0.05), (up, down, test.p_value, test.delta_ci95)
    # 3 of 3 items flipped to right: +100 points, yet exact p = 0.25, and the interval holds 0.
    test = paired_test({"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 0.0, "b": 0.0, "c": 0.0})
    assert test.delta == 1.0 and test.p_value == pytest.approx(0.25)
    assert test.delta_ci95[0] < 0 < test.delta_ci95[1] == pytest.approx(1.0)
    # Nothing flipped on 100 items: no change, and none bigger than the exact bound on 0 flips of 100.
    same = paired_test({i: float(i % 2) for i in range(100)}, {i: float(i % 2) for i in range(100)})
    bound = scipy_stats.binomtest(0, 100).proportion_ci(0.95, method="exact").high
    assert same.p_value == 1.0 and same.delta_ci95 == pytest.approx((-bound, bound))


def test_only_shared_items_are_paired_and_non_binary_scores_use_a_paired_bootstrap():
    now, base = {"a": 0.5, "b": 0.9, "c": 0.1, "x": 1.0}, {"a": 0.4, "b": 0.7, "c": 0.2, "y": 0.0}
    test = paired_test(now, base)
    assert test.n_shared == 3 and test.method == "paired bootstrap"
    assert test.delta == pytest.approx((0.1 + 0.2 - 0.1) / 3)
    assert test.p_value > 0.2  # three noisy items cannot decide
    assert test.delta_ci95[0] < 0 < test.delta_ci95[1]


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
    assert regressed.tasks[0].verdict == REGRESSED
    assert regressed.tasks[0].cost_usd_delta == pytest.approx(0.0)
    held = compare_runs(RunRecords.load(wobble), RunRecords.load(base))
    assert not held.regressed and held.tasks[0].test.p_value > 0.05
    assert held.tasks[0].verdict == NO_CHANGE
    improved = compare_runs(RunRecords.load(base), RunRecords.load(drop))
    assert not improved.regressed and improved.tasks[0].verdict == IMPROVED


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


def test_drift_names_every_generation_and_protocol_setting_that_differs(tmp_path):
    """The local-smoke suite's two settings (max_tokens 32 vs 48) once read "Drift: none"."""
    scores = [1.0, 0.0] * 50
    base = make_run(tmp_path, "base", scores, config=[
        "model=smollm2-local", "task=gsm8k", "model.generation.max_tokens=32", "model.concurrency=1",
        f"results_dir={tmp_path / 'a'}", "limit=100"])
    new = make_run(tmp_path, "new", scores, config=[
        "model=smollm2-local", "task=gsm8k", "model.generation.max_tokens=48", "task.num_fewshot=3",
        "+model.generation.extra_body={thinking: {type: enabled}}", "task.apply_chat_template=false",
        # none of these changes what is measured:
        "model.concurrency=4", "model.max_retries=9", "model.request_timeout_s=5", "model.stream=true",
        f"results_dir={tmp_path / 'b'}", "run_id=new", "budget.max_usd=1", "tracking.experiment=other", "limit=100"])
    comparison = compare_runs(RunRecords.load(new), RunRecords.load(base))
    drift = {d.what: (d.baseline, d.current) for d in comparison.drift}
    assert drift == {"model.generation.max_tokens": (32, 48), "task.num_fewshot": (5, 3),
                     "model.generation.extra_body": ({}, {"thinking": {"type": "enabled"}}),
                     "task.apply_chat_template": (True, False)}
    assert "- model.generation.max_tokens: 32 -> 48" in render_markdown(comparison)


def test_a_run_without_config_yaml_is_named_not_taken_for_no_drift(tmp_path):
    base = make_run(tmp_path, "base", [1.0, 0.0] * 5)
    new = make_run(tmp_path, "new", [1.0, 0.0] * 5, config=["model=smollm2-local", "task=gsm8k"])
    drift = {d.what: (d.baseline, d.current) for d in compare_runs(RunRecords.load(new), RunRecords.load(base)).drift}
    assert drift == {"config.yaml": ("missing", "present")}
    assert UNSET == "(unset)"  # how a setting only one config has is shown


def test_every_ignored_setting_is_a_field_of_the_config_schema():
    """A renamed field must not slip out of the ignore list and start firing (or the reverse)."""
    from dataclasses import fields, is_dataclass
    from typing import get_args, get_type_hints

    from harness.config import RunConfig

    for name in NOT_PROTOCOL:
        schema = RunConfig
        for part in name.split("."):
            assert schema is not None and part in {f.name for f in fields(schema)}, name
            hint = get_type_hints(schema)[part]
            schema = next((c for c in (hint, *get_args(hint)) if is_dataclass(c)), None)


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
    assert main([str(night2)]) == EXIT_OK  # 'previous' looked for beside the run, not in ./results
    assert "night2 vs baseline night1" in capsys.readouterr().out
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
    assert "| mmlu_pro_official_biology | 0.0 | 100.0 | -100.0 [-100.0, +95.0] | 1 |" in proc.stdout
    # Pooled over the 14 categories: 14 discordant pairs, exact p = 2 / 2**14.
    comparison = json.loads(next(results.glob("runs/*/compare.json")).read_text())
    whole = next(t for t in comparison["tasks"] if t["task"] == "mmlu_pro_official")
    assert whole["regression"] and whole["test"]["n_shared"] == 14
    assert whole["test"]["p_value"] == pytest.approx(2 / 2**14)
    assert not next(t for t in comparison["tasks"] if t["task"] == "mmlu_pro_official_law")["regression"]
    assert comparison["regressed"] and comparison["drift"] == []
