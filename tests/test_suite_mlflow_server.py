"""A suite through Hydra multirun (joblib, two jobs in parallel) on the real local model, logged to a
real `mlflow server` on loopback, then compared against a baseline fetched from that server."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mlflow_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "mlflow-server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", (tmp_path / "server-artifacts").as_uri(), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_suite_to_mlflow_server_then_compare(require_llama, gsm8k_dir, mlflow_server, tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "-m", "suite=local-smoke", f"tracking.tracking_uri={mlflow_server}",
         f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null", f"results_dir={results}", "progress=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = sorted((json.loads(p.read_text()) for p in results.glob("runs/*/summary.json")),
                       key=lambda s: s["run_id"])
    assert len(summaries) == 2 and all(s["suite"] == "local-smoke" for s in summaries)

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("harness")
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {s["mlflow_run_id"] for s in summaries}
    max_tokens = set()
    for s in summaries:
        run = runs[s["mlflow_run_id"]]
        assert run.data.tags["suite"] == "local-smoke" and run.data.tags["model"] == "smollm2-local"
        assert run.data.metrics["gsm8k.exact_match"] == pytest.approx(s["tasks"]["gsm8k"]["value"])
        assert run.data.metrics["tokens.output"] == s["usage"]["output_tokens"]
        max_tokens.add(run.data.params["model.generation.max_tokens"])
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "samples_table.json" in artifacts
        # Runs that line up in the UI: common metrics, readable unique names, true durations, tags, a description.
        task = s["tasks"]["gsm8k"]
        assert run.data.metrics["score"] == pytest.approx(task["value"]) and run.data.metrics["n"] == task["n"]
        assert (run.data.metrics["score.ci_low"], run.data.metrics["score.ci_high"]) == pytest.approx(task["ci95"])
        assert run.data.metrics["cost_per_sample_usd"] == pytest.approx(task["cost_per_sample_usd"])
        assert run.info.run_name.startswith("smollm2-local · gsm8k · ") and run.data.tags["run_id"] == s["run_id"]
        assert (run.info.end_time - run.info.start_time) / 1000 >= 0.9 * s["wall_seconds"] > 1
        assert run.data.tags["benchmark"] == "GSM8K" and run.data.tags["provider"] == "llama_cpp"
        assert "max_tokens=" in run.data.tags["protocol"] and "score" in run.data.tags["mlflow.note.content"]
        table = json.loads((Path(client.download_artifacts(run.info.run_id, "samples_table.json"))).read_text())
        assert {"question", "target", "response", "extracted", "correct", "cost_usd"} <= set(table["columns"])
    assert len({runs[s["mlflow_run_id"]].info.run_name for s in summaries}) == 2  # unique
    assert len({runs[s["mlflow_run_id"]].data.tags["protocol"] for s in summaries}) == 2  # max_tokens differ
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert max_tokens == {"32", "48"}  # the two generation settings of the sweep

    current, baseline = summaries[1], summaries[0]
    current_dir = next(p.parent for p in results.glob("runs/*/summary.json") if current["run_id"] in str(p))
    cmp = subprocess.run([sys.executable, "-m", "harness.compare", str(current_dir),
                          "--baseline", f"mlflow:{baseline['mlflow_run_id']}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr  # 3 items cannot show a significant drop
    assert f"{current['run_id']} vs baseline {baseline['run_id']}" in cmp.stdout
    assert "model.generation.max_tokens: 48 -> 32" in cmp.stdout or "model.generation.max_tokens: 32 -> 48" in cmp.stdout
    result = json.loads((current_dir / "compare.json").read_text())
    assert result["tasks"][0]["test"]["n_shared"] == 3
    logged = {a.path for a in client.list_artifacts(current["mlflow_run_id"], "compare")}
    assert {"compare/compare.png", "compare/compare.md", "compare/compare.json"} <= logged

    missing = subprocess.run([sys.executable, "-m", "harness.compare", str(current_dir), "--baseline", "mlflow:0123"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "cannot fetch MLflow run 0123" in missing.stderr


def test_parallel_jobs_initialise_a_fresh_local_store_without_racing(tmp_path):
    """Parallel suite jobs on a new SQLite store: without the lock, alembic's migration races."""
    script = (
        "import sys; from pathlib import Path; from harness.config import TrackingConfig; "
        "from harness.records.tracking import MlflowRun; "
        "r = MlflowRun(TrackingConfig(tracking_uri=f'sqlite:///{sys.argv[1]}/mlflow.db'), Path(sys.argv[1])); "
        "import time; print(r.start('job', {}, time.time()))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-1500:] for _, err in outputs]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("harness")
    assert len(client.search_runs([experiment.experiment_id])) == 3


def test_suite_on_a_local_ray_instance(require_llama, gsm8k_dir, tmp_path):
    """Runs where the `ray` extra is installed (not in CI: Ray is ~0.5 GB); measured by hand too."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "harness", "-m", "suite=local-smoke-ray", "tracking=none",
                           f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null", f"results_dir={results}",
                           "progress=false"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in results.glob("runs/*/summary.json")]
    assert sorted(s["suite"] for s in summaries) == ["local-smoke-ray"] * 2


def test_planted_regression_against_the_server_baseline_by_tag(mmlu_pro_dir, mlflow_server, tmp_path):
    """Two real runs (replays: all right, then all wrong) logged to the server; the first tagged as
    baseline; compare finds it by tag and exits 1."""
    from harness.common.doc_key import doc_key
    from tests.conftest import MMLU_PRO_TEST, run_harness

    results = tmp_path / "results"
    run_dirs = {}
    for name, answer in (("good", "B"), ("bad", "C")):
        recorded = tmp_path / f"{name}.jsonl"
        recorded.write_text("".join(json.dumps({"doc_key": doc_key(r), "response": f"The answer is ({answer})",
                                                "finish_reason": "stop"}) + "\n" for r in MMLU_PRO_TEST))
        proc = run_harness("model=replay", f"model.path={recorded}", "task=mmlu_pro_official",
                           f"task.dataset_path={mmlu_pro_dir}", f"results_dir={results}",
                           f"tracking.tracking_uri={mlflow_server}", f"run_id={name}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        run_dirs[name] = results / "runs" / name
    client = MlflowClient(tracking_uri=mlflow_server)
    good = json.loads((run_dirs["good"] / "summary.json").read_text())
    client.set_tag(good["mlflow_run_id"], "baseline", "true")
    cmp = subprocess.run([sys.executable, "-m", "harness.compare", str(run_dirs["bad"]), "--baseline",
                          "tag:baseline=true"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cmp.returncode == 1, cmp.stdout + cmp.stderr
    assert "bad vs baseline good" in cmp.stdout
    none = subprocess.run([sys.executable, "-m", "harness.compare", str(run_dirs["bad"]), "--baseline",
                           "tag:baseline=nope"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert none.returncode == 2 and "with tag baseline=nope" in none.stderr


def test_the_store_opens_off_the_critical_path_and_a_bad_uri_still_costs_nothing(tmp_path):
    """background=True (as run.py opens it): the cheap check runs at once, the store is created only
    after begin() (the first response), and what can be known early still fails before any request."""
    from harness.config import ConfigError, TrackingConfig
    from harness.records.tracking import MlflowRun

    results, folder = tmp_path / "results", tmp_path / "run-folder"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    store = results / "mlflow.db"
    run = MlflowRun(TrackingConfig(tracking_uri=f"sqlite:///{store}"), results, background=True)
    assert not store.exists()  # nothing imported or migrated before the requests
    run.begin()
    run_id = run.start("job", {}, time.time() - 5)
    run.finish(folder, status="FINISHED")
    assert store.exists() and MlflowClient(tracking_uri=f"sqlite:///{store}").get_run(run_id).info.status == "FINISHED"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"cannot reach the MLflow server at http://127.0.0.1:{port}"):
        MlflowRun(TrackingConfig(tracking_uri=f"http://127.0.0.1:{port}"), tmp_path, background=True)
    assert time.monotonic() - started < 6
