"""End to end with no mocks in the path: `python -m harness` against the real SmolLM2 model behind
llama.cpp's OpenAI-compatible server, on GSM8K data in the hub's schema."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import GSM8K_TEST, run_harness

# Small but real: 1-shot prompts and short answers keep each request to about a second on 2 cores.
FAST = ["task.num_fewshot=1", "model.generation.max_tokens=48"]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _only_run(results: Path) -> Path:
    runs = sorted((results / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def _gsm8k_number(text: str) -> str:
    return text.split("####")[-1].strip()


def test_default_job_end_to_end(require_llama, gsm8k_dir, tmp_path):
    """The embedded default (managed llama.cpp server + SmolLM2) -> run folder + MLflow run."""
    results = tmp_path / "results"
    proc = run_harness("limit=3", f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null", f"results_dir={results}", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = _only_run(results)
    summary = json.loads((run_dir / "summary.json").read_text())
    samples = _read_jsonl(run_dir / "samples.jsonl")
    requests = _read_jsonl(run_dir / "requests.jsonl")

    task = summary["tasks"]["gsm8k"]
    assert summary["model"] == "smollm2-local"
    assert summary["endpoint"]["provider"] == "llama_cpp"
    assert summary["endpoint"]["served_model"] == ["smollm2-135m-instruct-q4_1"]
    assert task["n"] == 3 and len(samples) == 3 and len(requests) == 3
    assert sorted(s["doc_id"] for s in samples) == [0, 1, 2]

    # Token totals: summary == sum over samples == sum over the streamed responses; all non-zero.
    for field in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"):
        assert summary["usage"][field] == sum(s["usage"][field] for s in samples)
        assert summary["usage"][field] == sum(r["completion"]["usage"][field] for r in requests)
    assert summary["usage"]["input_tokens"] > 100 and summary["usage"]["output_tokens"] > 0
    assert summary["usage"]["requests"] == summary["requests_sent"] == 3

    # The score is the mean of per-sample scores, and each sample's score is exact match of the
    # number lm-eval extracted (flexible: last number) against the reference answer.
    assert task["value"] == pytest.approx(sum(s["score"] for s in samples) / 3)
    for s in samples:
        reference = _gsm8k_number(GSM8K_TEST[s["doc_id"]][1])
        extracted = re.sub(r"[$,]|\.$", "", s["extracted"] or "")
        assert s["score"] == float(extracted == reference), s
        assert s["response"] is not None and s["finish_reason"] in ("stop", "length")
    lo, hi = task["ci95"]
    assert 0 <= lo <= task["value"] <= hi <= 1 and hi > 0.3  # n=3 leaves a wide interval

    # Dataset fingerprint and versions recorded; the secret-free config written.
    assert summary["dataset"]["gsm8k"]["n_docs"] == len(GSM8K_TEST)
    assert re.fullmatch(r"[0-9a-f]{64}", summary["dataset"]["gsm8k"]["sha256"])
    assert summary["versions"]["lm_eval"] == "0.4.13"
    config_text = (run_dir / "config.yaml").read_text()
    assert "name: smollm2-local" in config_text and "max_tokens: 48" in config_text

    # MLflow run: metrics equal summary.json; contract tags; the run folder as artifacts.
    client = MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    run = client.get_run(summary["mlflow_run_id"])
    m = run.data.metrics
    assert m["gsm8k.exact_match"] == pytest.approx(task["value"])
    assert m["gsm8k.exact_match.ci_low"] == pytest.approx(lo)
    assert m["gsm8k.exact_match.ci_high"] == pytest.approx(hi)
    assert m["tokens.input"] == summary["usage"]["input_tokens"]
    assert m["tokens.output"] == summary["usage"]["output_tokens"]
    assert m["tokens.reasoning"] == summary["usage"]["reasoning_tokens"]
    assert m["tokens.cached_input"] == summary["usage"]["cached_input_tokens"]
    assert m["cost_usd"] == summary["cost_usd"] == 0.0
    assert run.data.tags["model"] == "smollm2-local" and run.data.tags["task"] == "gsm8k"
    assert "git_sha" in run.data.tags and "dataset.gsm8k.revision" in run.data.tags
    assert run.data.params["model.model_id"] == "smollm2-135m-instruct-q4_1"
    assert run.data.params["limit"] == "3"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "run")}
    assert {"run/summary.json", "run/samples.jsonl", "run/config.yaml"} <= artifacts

    # The managed server is gone once the run ends.
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(summary["endpoint"]["base_url"] + "/models", timeout=2)


def _proxied(proxy, results: Path, *extra: str, fast: list[str] = FAST) -> list[str]:
    return ["model=openai-compatible", f"model.base_url={proxy.base_url}", "model.model_id=smollm2",
            "tracking=none", f"results_dir={results}", *fast, *extra]


def test_tokens_and_dollars_equal_what_the_server_reported_and_rerun_is_free(proxy, gsm8k_dir, tmp_path):
    results = tmp_path / "results"
    sentinel = "sk-SENTINEL-e2e-4242"
    priced = ["model.pricing.input_per_mtok=1.5", "model.pricing.output_per_mtok=4.0", "limit=3",
              f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null"]
    args = _proxied(proxy, results, *priced)
    first = run_harness(*args, env={"OPENAI_COMPATIBLE_API_KEY": sentinel})
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(proxy.responses) == 3
    summary = json.loads(next((results / "runs").glob("*/summary.json")).read_text())
    server_in, server_out = proxy.usage_total("prompt_tokens"), proxy.usage_total("completion_tokens")
    assert summary["usage"]["input_tokens"] == server_in > 0
    assert summary["usage"]["output_tokens"] == server_out > 0
    expected_cost = (server_in * 1.5 + server_out * 4.0) / 1e6
    assert summary["cost_usd"] == pytest.approx(expected_cost, rel=1e-12)
    assert summary["cost_usd_new"] == pytest.approx(expected_cost, rel=1e-12)
    assert summary["tasks"]["gsm8k"]["cost_per_sample_usd"] == pytest.approx(expected_cost / 3)

    # The key came from the environment and went to the server, and nowhere on disk.
    assert set(proxy.auth_headers) == {f"Bearer {sentinel}"}
    for path in results.rglob("*"):
        if path.is_file():
            assert sentinel.encode() not in path.read_bytes(), path

    # Same command again: every response comes from the cache, 0 requests, $0 newly spent,
    # original usage and cost kept, identical scores.
    second = run_harness(*args, env={"OPENAI_COMPATIBLE_API_KEY": sentinel})
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(proxy.responses) == 3  # nothing new reached the server
    summaries = [json.loads(p.read_text()) for p in (results / "runs").glob("*/summary.json")]
    rerun = next(s for s in summaries if s["run_id"] != summary["run_id"])
    assert rerun["requests_sent"] == 0 and rerun["cache_hits"] == 3
    assert rerun["cost_usd_new"] == 0.0
    assert rerun["cost_usd"] == pytest.approx(expected_cost, rel=1e-12)
    assert rerun["usage"] == summary["usage"]
    assert rerun["usage_new"]["input_tokens"] == 0
    assert rerun["tasks"]["gsm8k"]["value"] == summary["tasks"]["gsm8k"]["value"]

    # A change to any generation parameter is a cache miss: one more token allowed -> 3 new requests.
    third = run_harness(*_proxied(proxy, results, *priced, "model.generation.max_tokens=49"))
    assert third.returncode == 0, third.stderr[-3000:]
    assert len(proxy.responses) == 6


def test_refused_request_is_recorded_as_an_error_and_the_rerun_pays_only_for_it(proxy, gsm8k_dir, tmp_path):
    results = tmp_path / "results"
    args = _proxied(proxy, results, "limit=3", f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null", "model.concurrency=1")
    proxy.fail_after = 2  # the third request is refused with a 400: recorded, the run goes on
    broken = run_harness(*args)
    assert broken.returncode == 0, broken.stderr[-3000:]
    assert "INCOMPLETE: 1 document" in broken.stdout
    run_dir = _only_run(results)
    first = json.loads((run_dir / "summary.json").read_text())
    assert first["complete"] is False and first["n_errors"] == 1 and first["tasks"]["gsm8k"]["n"] == 2
    assert len(_read_jsonl(run_dir / "requests.jsonl")) == 2  # streamed as they arrived
    (error,) = _read_jsonl(run_dir / "errors.jsonl")
    assert error["error"]["status"] == 400 and "injected failure" in error["error"]["message"]

    proxy.fail_after = None
    resumed = run_harness(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(proxy.responses) == 3  # 2 before the failure + only the missing one
    summary = max((json.loads(p.read_text()) for p in (results / "runs").glob("*/summary.json")),
                  key=lambda s: s["cache_hits"])
    assert summary["requests_sent"] == 1 and summary["cache_hits"] == 2 and summary["tasks"]["gsm8k"]["n"] == 3
    assert summary["complete"] is True


def test_ctrl_c_stops_the_managed_server_and_keeps_what_arrived(require_llama, gsm8k_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    results = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "progress=false", "limit=4", f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null",
         f"results_dir={results}", "tracking=none", "model.concurrency=1", *FAST],
        cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    requests_file = None
    while time.monotonic() < deadline:
        found = list(results.glob("runs/*/requests.jsonl"))
        if found and found[0].read_text().count("\n") >= 1:
            requests_file = found[0]
            break
        time.sleep(0.2)
    assert requests_file is not None, "no response arrived"
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)  # mid-generation: the server is answering the next request
    _, stderr = proc.communicate(timeout=60)
    returned_after = time.monotonic() - interrupted
    assert proc.returncode == 130, stderr[-2000:]
    assert "re-run the same command to resume" in stderr
    assert returned_after < 6, returned_after  # not the server's 15 s grace for the generation in hand
    run_dir = requests_file.parent
    assert "run interrupted (Ctrl-C)" in (run_dir / "run.log").read_text()
    assert not (run_dir / "summary.json").exists()
    port = re.search(r"http://127\.0\.0\.1:(\d+)", (run_dir / "server.log").read_text()).group(1)
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    assert os.path.getsize(requests_file) > 0


def test_mmlu_pro_group_scores_every_category_and_the_whole(proxy, mmlu_pro_dir, tmp_path):
    from tests.conftest import MMLU_PRO_CATEGORIES

    results = tmp_path / "results"
    proc = run_harness(*_proxied(proxy, results, "task=mmlu_pro", f"task.dataset_path={mmlu_pro_dir}", "limit=1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(next((results / "runs").glob("*/summary.json")).read_text())
    categories = {f"mmlu_pro_{c.replace(' ', '_')}" for c in MMLU_PRO_CATEGORIES}
    assert set(summary["tasks"]) == categories | {"mmlu_pro"}
    whole = summary["tasks"]["mmlu_pro"]
    assert whole["n"] == 14 and sorted(whole["subtasks"]) == sorted(categories)
    assert whole["value"] == pytest.approx(sum(summary["tasks"][c]["value"] for c in categories) / 14)
    assert whole["n_extraction_failed"] == sum(summary["tasks"][c]["n_extraction_failed"] for c in categories)
    assert whole["usage"]["input_tokens"] == summary["usage"]["input_tokens"] == proxy.usage_total("prompt_tokens")
    assert len(proxy.responses) == 14
    samples = _read_jsonl(next((results / "runs").glob("*/samples.jsonl")))
    for s in samples:  # 'answer is (X)' extraction: a letter, or lm-eval's no-match marker
        assert s["extracted"] == "[invalid]" or re.fullmatch(r"[A-J]", s["extracted"]), s["extracted"]
        assert s["extraction_failed"] == (s["extracted"] == "[invalid]")
        assert s["score"] == float(s["extracted"] == "B")  # every fixture question's answer is B


@pytest.mark.parametrize("task, data_fixture, extra, n", [
    ("mmlu_pro_official", "mmlu_pro_dir", ["limit=1"], 14),  # its prompt holds its own examples
    ("gsm8k_chat", "gsm8k_dir", ["limit=2", "task.num_fewshot=1", "task.dataset_sha256=null"], 2),
])
def test_protocol_tasks_run_live(proxy, task, data_fixture, extra, n, tmp_path, request):
    results = tmp_path / "results"
    data_dir = request.getfixturevalue(data_fixture)
    proc = run_harness(*_proxied(proxy, results, f"task={task}", f"task.dataset_path={data_dir}", *extra,
                                 fast=["model.generation.max_tokens=48"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    whole = summary["tasks"][task]
    assert whole["n"] == n and len(proxy.responses) == n
    assert set(whole["sensitivity"]) == {"strict", "official", "lenient", "spread"}
    assert sum(whole["extraction_stages"].values()) == n
    samples = _read_jsonl(next(results.glob("runs/*/samples.jsonl")))
    for s in samples:
        assert s["extraction_stage"] in whole["extraction_stages"]
        assert s["extraction_failed"] == (s["extracted"] is None)
    if task == "mmlu_pro_official":
        assert "exact_match_random_fallback" in whole["metrics"]
        first_prompt = proxy.requests_sent[0]["messages"]
        assert len(first_prompt) == 1 and first_prompt[0]["role"] == "user"
        assert first_prompt[0]["content"].startswith("The following are multiple choice questions (with answers) about ")


CLAIMS_FOR_TEST = """
claims:
  - id: test-smollm2-gsm8k-40
    kind: score
    model_as_named: "SmolLM2-135M-Instruct (as a test source names it)"
    model: smollm2-local
    benchmark: GSM8K
    task: gsm8k
    value: 99.0
    unit: percent
    protocol: {subset: full, reasoning: high}  # max would block it: the run's effort is the default
    source: {publication: "a claim written for this test", date: "2026-11-23"}
  - id: test-other-model
    kind: score
    model_as_named: "Someone else"
    model: v4-pro
    benchmark: GSM8K
    task: gsm8k
    value: 96.1
    unit: percent
    source: {publication: "a claim written for this test", date: "2026-11-23"}
"""


def test_claims_report_from_a_real_local_run(require_llama, gsm8k_dir, tmp_path):
    results, claims_dir = tmp_path / "results", tmp_path / "claims"
    claims_dir.mkdir()
    (claims_dir / "test.yaml").write_text(CLAIMS_FOR_TEST)
    proc = run_harness("limit=3", f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null",
                       f"results_dir={results}", f"claims.dir={claims_dir}", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = _only_run(results)
    summary = json.loads((run_dir / "summary.json").read_text())
    [verdict] = summary["claims"]  # the other model's claim is not this run's to judge
    task = summary["tasks"]["gsm8k"]
    assert verdict["claim_id"] == "test-smollm2-gsm8k-40" and verdict["n"] == 3
    assert verdict["measured"] == pytest.approx(100 * task["value"])
    assert verdict["ci95"] == pytest.approx([100 * x for x in task["ci95"]])
    # SmolLM2 on 3 items: the Wilson upper bound is far below 99 unless all 3 are right.
    expected = "below claim" if task["ci95"][1] < 0.99 else "underpowered"
    if verdict["strict_status"] != verdict["generous_status"]:  # truncated / unextracted answers decide it
        expected = "inconclusive"
        assert verdict["strict_status"] == "below claim" and "counted wrong" in verdict["detail"]
    assert verdict["status"] == expected
    assert any(m.startswith("subset: the claim is on the full set") for m in verdict["mismatches"])
    assert any(m.startswith("reasoning: the claim is at 'high'") for m in verdict["mismatches"])
    assert f"claim test-smollm2-gsm8k-40: {expected}" in proc.stdout
    png = run_dir / "claims.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test-smollm2-gsm8k-40" in (run_dir / "claims.md").read_text()
    assert "<table>" in (run_dir / "claims.html").read_text()
    client = MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["claim.test-smollm2-gsm8k-40"] == expected
    assert "run/claims.png" in {a.path for a in client.list_artifacts(run.info.run_id, "run")}

    # The report CLI re-renders it for the finished run and logs it to the same MLflow run.
    import subprocess
    import sys

    cli = subprocess.run([sys.executable, "-m", "harness.claims", str(run_dir)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "| test-smollm2-gsm8k-40 |" in cli.stdout and expected in cli.stdout
    assert "claims/claims.png" in {a.path for a in client.list_artifacts(run.info.run_id, "claims")}


def test_dry_run_sends_nothing_and_estimates_within_20_percent(proxy, gsm8k_dir, tmp_path):
    results = tmp_path / "results"
    priced = ["model.pricing.input_per_mtok=1.0", "model.pricing.output_per_mtok=2.0",
              f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null"]
    assert run_harness(*_proxied(proxy, results, *priced, "limit=2")).returncode == 0  # the history
    sent_before = len(proxy.responses)

    dry = run_harness(*_proxied(proxy, results, *priced, "limit=4", "dry_run=true"))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert len(proxy.responses) == sent_before  # nothing was sent
    (plan,) = [json.loads(p.read_text()) for p in results.glob("runs/*/dry_run.json")]
    estimate = plan["estimate"]
    assert (estimate["requests"], estimate["cached"]) == (4, 2)
    assert "1 earlier run(s)" in estimate["basis"] and "nothing was sent" in dry.stdout

    real = run_harness(*_proxied(proxy, results, *priced, "limit=4"))
    assert real.returncode == 0, real.stderr[-3000:]
    summary = max((json.loads(p.read_text()) for p in results.glob("runs/*/summary.json")),
                  key=lambda s: s["limit"])
    assert summary["requests_sent"] == 2
    measured = summary["cost_usd_new"]
    print(f"dry-run estimate ${estimate['cost_usd']:.8f} vs measured ${measured:.8f}")
    assert measured > 0 and abs(estimate["cost_usd"] - measured) / measured < 0.20, (estimate, measured)
    assert estimate["worst_case_usd"] >= measured


def test_streamed_local_run_measures_speed_and_judges_a_speed_claim(require_llama, gsm8k_dir, tmp_path):
    """model.stream=true on the real llama.cpp server: every response timed (TTFT, tokens/s), p50/p90 in
    summary.json and MLflow, and a speed claim written for the test gets a measured verdict. llama.cpp's
    stream carries no usage (no stream_options support), so usage is estimated and says so."""
    claims = tmp_path / "claims"
    claims.mkdir()
    (claims / "speed.yaml").write_text(
        "claims:\n"
        "  - id: test-smollm2-ttft\n    kind: speed\n    model_as_named: SmolLM2-135M\n    model: smollm2-local\n"
        "    benchmark: speed\n    task: null\n    metric: time_to_first_token\n    value: 100000\n    unit: ms\n"
        "    protocol: {}\n    source: {publication: test, date: '2026-11-30', provenance: written for the test}\n"
        "  - id: test-smollm2-rate\n    kind: speed\n    model_as_named: SmolLM2-135M\n    model: smollm2-local\n"
        "    benchmark: speed\n    task: null\n    metric: output_tokens_per_s\n    value: 1\n    unit: tokens_per_s\n"
        "    protocol: {}\n    source: {publication: test, date: '2026-11-30', provenance: written for the test}\n")
    results = tmp_path / "results"
    proc = run_harness("limit=2", f"task.dataset_path={gsm8k_dir}", "task.dataset_sha256=null", f"results_dir={results}",
                       "model.stream=true", f"claims.dir={claims}", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = _only_run(results)
    summary = json.loads((run_dir / "summary.json").read_text())
    requests = _read_jsonl(run_dir / "requests.jsonl")
    assert all(r["completion"]["ttft_s"] > 0 and r["completion"]["tokens_per_s"] > 0 for r in requests)
    speed = summary["speed"]
    assert speed["n_streamed"] == 2 and speed["ttft_ms"]["p50"] > 0 and speed["output_tokens_per_s"]["p50"] > 0
    assert summary["tasks"]["gsm8k"]["speed"]["n_streamed"] == 2
    assert summary["usage"]["n_estimated"] == 2  # llama.cpp streams no usage: estimated, and said so
    verdicts = {v["claim_id"]: v for v in summary["claims"]}
    # 100 s to first token is far slower than SmolLM2 on a CPU; 1 token/s far below what it streams.
    assert verdicts["test-smollm2-ttft"]["status"] == "above claim"
    assert verdicts["test-smollm2-rate"]["status"] == "above claim"
    assert verdicts["test-smollm2-ttft"]["measured"] == pytest.approx(speed["ttft_ms"]["p50"])
    assert verdicts["test-smollm2-ttft"]["ci95"] is None  # p50/p90 are no 95% interval; the report must not say so
    assert any("output length" in m for m in verdicts["test-smollm2-ttft"]["mismatches"])
