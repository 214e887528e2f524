"""The claims board over the real registry: run folders whose verdicts come from the real verdict code,
an MLflow store in tmp_path, and the page rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.claims.__main__ import main
from harness.claims.board import (BOARD_FILE, NO_MODEL, NO_TASK, NOT_CHECKED, Tracking, build_board, collect_runs,
                                  render_board)
from harness.claims.registry import load_claims
from harness.claims.verdicts import BELOW, CONSISTENT, judge
from harness.common.stats import mean_estimate
from harness.config import GenerationConfig, ModelConfig, PricingConfig, RunConfig, TaskConfig

REGISTRY = load_claims()
V4_MMLU_PRO = "deepseek-table-2026-04-v4-pro-max-mmlu-pro"  # 87.5, the DailyTechWire article says 94.3
DTW_MMLU_PRO = "dtw-2026-05-25-deepseek-v4-mmlu-pro"
PRICES = {"v4-pro": (1.74, 3.48), "gpt-5.5": (5.0, 30.0), "claude-opus-4.7": (5.0, 25.0)}


def make_summary(run_id: str, k: int, n: int, model: str = "v4-pro", task: str = "mmlu_pro_official",
                 benchmark: str = "MMLU-Pro", label: str | None = None, effort: str = "max") -> dict:
    """A summary.json as run.py writes it, its `claims` judged by harness.claims.verdicts."""
    inp, out = PRICES[model]
    cfg = RunConfig(model=ModelConfig(name=model, model_id=model, thinking=True,
                                      generation=GenerationConfig(temperature=0.0, reasoning_effort=effort),
                                      pricing=PricingConfig(input_per_mtok=inp, output_per_mtok=out, source="list",
                                                            effective_date="2026-04")),
                    task=TaskConfig(name=task, lm_eval_task=task, benchmark=benchmark))
    e = mean_estimate([1] * k + [0] * (n - k))
    summary = {"run_id": run_id, "model": label or model, "task": task, "complete": True, "mlflow_run_id": None,
               "tasks": {task: {"value": e.value, "ci95": list(e.ci95), "n": n, "cost_usd": 0.0021 * n}},
               "dataset": {task: {"n_docs": 12032}}, "cost_usd": 0.0021 * n}
    from harness.spend.price_book import schedule_for
    from harness.spend.price_claims import price_matches

    matches = price_matches(REGISTRY, model, schedule_for(cfg.model.pricing))
    summary["claims"] = [v.to_dict() for v in judge(REGISTRY, cfg, summary, price_matches=matches)]
    return summary


def write_run(results: Path, summary: dict) -> Path:
    folder = results / "runs" / summary["run_id"]
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def board_of(results: Path, tracking: Tracking | None = None):
    return build_board(REGISTRY, *collect_runs(results, tracking))


def status_of(board) -> dict[str, str]:
    return {row.claim.id: row.status for row in board.rows}


def test_every_claim_once_and_the_latest_run_wins(tmp_path):
    results = tmp_path / "results"
    newer = write_run(results, make_summary("20260520T100000Z-v4-pro-mmlu_pro_official-bbbbbb", 880, 1000))
    older = write_run(results, make_summary("20260501T100000Z-v4-pro-mmlu_pro_official-aaaaaa", 700, 1000))
    os.utime(older / "summary.json", (2e9, 2e9))  # written later, started earlier: the start decides
    board = board_of(results)
    assert [r.claim.id for r in board.rows] == [c.id for c in REGISTRY]
    row = next(r for r in board.rows if r.claim.id == V4_MMLU_PRO)
    assert row.status == CONSISTENT and row.run.folder == newer.resolve() and row.n_runs == 2
    page = render_board(board)
    for claim in REGISTRY:
        assert page.count(f"id='claim-{claim.id}'") == 1
    assert page.count("<tr id='claim-") == len(REGISTRY)
    assert newer.resolve().as_uri() in page and older.name not in page
    assert "88.0 [85.8, 89.9]" in page  # measured with its 95% interval, formatted as the run's report


def test_runs_without_a_time_in_their_id_are_ordered_by_when_they_were_written(tmp_path):
    results = tmp_path / "results"
    for name, k, written in (("rerun-b", 700, 1.9e9), ("rerun-a", 880, 2e9)):  # run_id=... chosen by hand
        folder = write_run(results, make_summary(name, k, 1000))
        os.utime(folder / "summary.json", (written, written))
    assert status_of(board_of(results))[V4_MMLU_PRO] == CONSISTENT


def test_unchecked_rows_say_why(tmp_path):
    results = tmp_path / "results"
    write_run(results, make_summary("20260520T100000Z-v4-pro-mmlu_pro_official-cccccc", 700, 1000))
    status = status_of(board_of(results))
    assert status[V4_MMLU_PRO] == BELOW
    assert status["release-pricing-2026-04-v4-pro-input"] == CONSISTENT  # priced as the run billed
    assert status["deepseek-table-2026-04-gpt-5-5-gpqa-diamond"] == NOT_CHECKED
    assert status["dtw-2026-05-25-deepseek-v4-aime-2025"] == NO_TASK
    assert status[DTW_MMLU_PRO] == NO_MODEL  # "DeepSeek V4 (671B)" is mapped to no model config
    page = render_board(board_of(results))
    assert "python -m harness</code> <code>model=gpt-5.5</code> <code>task=gpqa_diamond" in page.replace("<wbr>", "")


def test_contradicting_sources_stand_side_by_side(tmp_path):
    board = board_of(tmp_path)
    [group] = [g for g in board.contradictions() if {r.claim.id for r in g} >= {V4_MMLU_PRO, DTW_MMLU_PRO}]
    assert {r.claim.value for r in group} == {94.3, 87.5}
    page = render_board(board)
    section = page.split("<h2>Same benchmark, different claims</h2>")[1].split("<h2 id='src-")[0]
    group_html = re.search(r"<h3>MMLU-Pro \(accuracy\).*?</div></div></div>", section).group(0)
    assert "DeepSeek V4 models: 94.3% vs 87.5%, 6.8 points apart</h3>" in group_html
    assert "DeepSeek V4 (671B)" in group_html and "DeepSeek V4-Pro-Max" in group_html
    # Claims of one source, or the same number from several, are no contradiction.
    assert all(len({(r.claim.source.publication, r.claim.source.date) for r in g}) > 1 for g in board.contradictions())


def test_run_data_is_escaped(tmp_path):
    results = tmp_path / "results"
    summary = make_summary("20260520T100000Z-x-mmlu_pro_official-dddddd", 880, 1000, label="<script>alert(1)</script>")
    summary["claims"][0]["mismatches"] = ["<img src=x onerror=alert(2)>"]
    write_run(results, summary)
    page = render_board(board_of(results))
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(2)&gt;" in page


def test_cli_without_runs_renders_every_score_claim_unchecked_and_price_claims_by_the_book(tmp_path, capsys):
    assert main(["board", "--results-dir", str(tmp_path / "results")]) == 0
    page = (tmp_path / "results" / BOARD_FILE).read_text()
    said = capsys.readouterr()
    assert f"written: {tmp_path / 'results' / BOARD_FILE}" in said.out
    assert f"no results folder at {tmp_path / 'results'}" in said.err  # a typo'd --results-dir is not silent
    assert page.count("<tr id='claim-") == len(REGISTRY)
    kinds = {c.id: c.kind for c in REGISTRY}
    rows = re.findall(r"<tr id='claim-(.*?)'(.*?)</tr>", page)
    assert len(rows) == len(REGISTRY) and not [i for i, row in rows if "st st-bad" in row and kinds[i] != "price"]
    # Price claims need no run: the book's verdict on each claim's date. DailyTechWire's $0.07 / $0.27 for
    # "DeepSeek V4" match no V4 period that day; the preview coverage's V4-Pro list prices ($1.74 / $3.48, May
    # 2026) are above the 75% promotion the book has in force then; the rest hold.
    judged = [c for c in REGISTRY if c.kind == "price" and (c.model or c.price_books)]
    assert re.search(rf"\b{len(judged) - 4} consistent\b", said.out) and re.search(r"\b2 above claim\b", said.out)
    assert re.search(r"\b2 below claim\b", said.out)
    assert "none of deepseek-v4-flash, deepseek-v4-pro had that price on 2026-05-25" in page
    # The commands that would check them paste into a shell as they are, at the stated effort.
    assert "&lt;any&gt;" not in page and "model.generation.reasoning_effort=max" in page.replace("<wbr>", "")


def test_cli_without_a_registry_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no claims registry"):
        main(["board", "--results-dir", str(tmp_path), "--claims-dir", str(tmp_path / "nowhere")])


def test_mlflow_runs_are_read_deduplicated_and_the_board_logged(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    results = tmp_path / "results"
    results.mkdir()
    uri = f"sqlite:///{results / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("harness", artifact_location=(tmp_path / "mlartifacts").as_uri())

    def tracked(summary: dict, keep_local: bool, name: str | None = None) -> str:
        """Logged as run.py does: the run folder as artifacts under run/, a claim.<id> tag per verdict and
        our run id as a tag (older runs: as the run's name)."""
        tags = {f"claim.{v['claim_id']}": v["status"] for v in summary["claims"]}
        tags.update({"run_id": summary["run_id"]} if name else {})
        run = client.create_run(experiment_id, run_name=name or summary["run_id"], tags=tags)
        summary["mlflow_run_id"] = run.info.run_id
        folder = write_run(results if keep_local else tmp_path / "elsewhere", summary)
        client.log_artifacts(run.info.run_id, str(folder), artifact_path="run")
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    only_tracked = tracked(make_summary("20260521T100000Z-v4-pro-mmlu_pro_official-eeeeee", 700, 1000), False)
    tracked(make_summary("20260401T100000Z-v4-pro-mmlu_pro_official-ffffff", 880, 1000), True,
            name="v4-pro · mmlu_pro_official · 10:00:00 ffffff")
    assert main(["board", "--results-dir", str(results)]) == 0  # finds results/mlflow.db by itself
    out = capsys.readouterr().out
    board = board_of(results, Tracking(uri, "harness"))
    assert len(board.runs) == 2  # the run found locally and in MLflow counts once
    row = next(r for r in board.rows if r.claim.id == V4_MMLU_PRO)
    assert row.status == BELOW and row.run.folder is None and row.run.mlflow_run_id == only_tracked
    assert row.n_runs == 2
    both = next(r for r in board.runs if r.run_id.endswith("ffffff"))
    assert both.folder is not None and both.mlflow_run_id is not None

    assert main(["board", "--results-dir", str(results)]) == 0  # a second board reuses the run
    [board_run] = client.search_runs([experiment_id], "tags.kind = 'claims_board'")
    assert board_run.info.run_name == "claims board" and board_run.info.run_id in out
    assert [a.path for a in client.list_artifacts(board_run.info.run_id)] == [BOARD_FILE]
    logged = Path(client.download_artifacts(board_run.info.run_id, BOARD_FILE, str(tmp_path)))
    assert f"MLflow run {only_tracked}" in logged.read_text()
    assert board_run.data.metrics["claims.below_claim"] >= 1


def test_an_unreachable_tracking_server_only_warns(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    results = tmp_path / "results"
    write_run(results, make_summary("20260520T100000Z-v4-pro-mmlu_pro_official-gggggg", 880, 1000))
    assert main(["board", "--results-dir", str(results), "--tracking-uri", "http://127.0.0.1:9"]) == 0
    captured = capsys.readouterr()
    assert "could not read MLflow" in captured.err and "was not logged" in captured.err
    assert "st st-ok" in (results / BOARD_FILE).read_text()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH (apt-get install chromium)")
def test_the_board_in_headless_chromium(tmp_path):
    results = tmp_path / "results"
    write_run(results, make_summary("20260501T100000Z-v4-pro-mmlu_pro_official-hhhhhh", 700, 1000))
    write_run(results, make_summary("20260520T100000Z-v4-pro-mmlu_pro_official-iiiiii", 860, 1000))
    write_run(results, make_summary("20260522T100000Z-gpt-5.5-gpqa_diamond-jjjjjj", 180, 198, model="gpt-5.5",
                                    task="gpqa_diamond", benchmark="GPQA Diamond"))
    write_run(results, make_summary("20260523T100000Z-claude-opus-4.7-mmlu_pro_official-kkkkkk", 40, 50,
                                    model="claude-opus-4.7", effort="high"))
    assert main(["board", "--results-dir", str(results)]) == 0
    png = tmp_path / "board.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                    "--window-size=1400,2000", "--hide-scrollbars", (results / BOARD_FILE).resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert png.exists() and png.stat().st_size > 20_000
