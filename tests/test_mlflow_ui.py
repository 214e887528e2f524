"""What a person sees in MLflow after runs of two models on two tasks, in a real `mlflow server` on
loopback and, where Debian's `chromium` is installed, a real headless browser: the link the run prints
opens the runs (not the GenAI traces), the runs have readable unique names and true durations, and
every run carries the common metrics the compare view lines them up on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import GSM8K_TEST
from tests.fault_server import FaultServer
from tests.test_suite_mlflow_server import mlflow_server  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
COMMON = ("score", "score.ci_low", "score.ci_high", "n", "cost_per_correct_usd", "cost_per_sample_usd")


def _answer(payload) -> str:
    """The right answer to the fixture question asked, in both tasks' formats."""
    asked = payload["messages"][-1]["content"]
    right = next((a.rsplit("#### ", 1)[1] for q, a in GSM8K_TEST if q in asked), "0")
    return f"The final answer is {right}\n#### {right}"


def _browser(*args: str, timeout: float = 90) -> str:
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=20000", *args], capture_output=True, text=True, timeout=timeout)
    return proc.stdout


def _text(dom: str) -> str:
    import html

    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))


@pytest.mark.timeout(900)
def test_runs_of_two_models_and_two_tasks_line_up_in_mlflow(mlflow_server, gsm8k_dir, tmp_path):  # noqa: F811
    links = []
    # Each answer takes 0.5 s, so every job lasts over a second however fast the harness gets around it,
    # and a run span of the job's last moments (the bug below) cannot pass for the whole.
    with FaultServer(content_fn=_answer, prompt_tokens=120, completion_tokens=30, latency_s=0.5) as server:
        for model, price in (("alpha-7b", "0.5"), ("beta-70b", "2.0")):
            for task in ("gsm8k", "gsm8k_chat"):
                proc = subprocess.run(
                    [sys.executable, "-m", "harness", "model=openai-compatible", f"model.name={model}", f"model.model_id={model}",
                     f"model.base_url={server.base_url}", f"model.pricing.input_per_mtok={price}",
                     f"model.pricing.output_per_mtok={price}", f"task={task}", f"task.dataset_path={gsm8k_dir}",
                     "task.dataset_sha256=null", "limit=4", f"results_dir={tmp_path / 'results'}",
                     f"tracking.tracking_uri={mlflow_server}", "progress=false"],
                    cwd=ROOT, capture_output=True, text=True, timeout=300)
                assert proc.returncode == 0, proc.stderr[-2000:]
                links += re.findall(r"\[harness\] MLflow: (\S+)", proc.stdout)

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("harness")
    runs = client.search_runs([experiment.experiment_id])
    summaries = {json.loads(p.read_text())["mlflow_run_id"]: json.loads(p.read_text())
                 for p in (tmp_path / "results").glob("runs/*/summary.json")}
    assert len(runs) == 4 and set(summaries) == {r.info.run_id for r in runs}
    names = {r.info.run_name for r in runs}
    assert len(names) == 4
    assert {n.split(" · ")[0] + " · " + n.split(" · ")[1] for n in names} == {
        "alpha-7b · gsm8k", "alpha-7b · gsm8k_chat", "beta-70b · gsm8k", "beta-70b · gsm8k_chat"}
    for run in runs:
        summary = summaries[run.info.run_id]
        assert set(COMMON) <= set(run.data.metrics), sorted(run.data.metrics)  # the same names in every run
        assert run.data.metrics["score"] == 1.0 and run.data.metrics["cost_per_correct_usd"] > 0
        # True durations: the MLflow run spans the job (it was created at the end, lasting 65 ms).
        assert (run.info.end_time - run.info.start_time) / 1000 >= 0.9 * summary["wall_seconds"]
        assert summary["wall_seconds"] > 1
    pricier = {r.data.tags["model"]: r.data.metrics["cost_per_correct_usd"] for r in runs if r.data.tags["task"] == "gsm8k"}
    assert pricier["beta-70b"] == pytest.approx(4 * pricier["alpha-7b"])  # 2.0 vs 0.5 per 1M tokens

    link = links[-1]
    assert link == f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed: the browser half of this test did not run")
    runs_page = _text(_browser("--dump-dom", link))
    for name in names:  # the runs list, not the GenAI overview, with the names readable
        assert name in runs_page, runs_page[:2000]
    assert "4 matching runs" in runs_page
    screenshot = tmp_path / "runs.png"
    _browser("--window-size=1600,900", f"--screenshot={screenshot}", link)
    assert screenshot.stat().st_size > 30_000
    ids = [r.info.run_id for r in runs]
    compare = (f"{mlflow_server}/#/compare-runs?runs={urllib.parse.quote(json.dumps(ids))}"
               f"&experiments={urllib.parse.quote(json.dumps([experiment.experiment_id]))}")
    compare_page = _text(_browser("--dump-dom", compare))
    assert "Comparing 4 Runs" in compare_page and all(name in compare_page for name in names)
