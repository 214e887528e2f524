"""Whole runs (`python -m harness`, a real subprocess) against the fault-injecting server on loopback:
faults become recorded errors and a re-run retries only those; kill -9 and resume bills nothing twice
(the server's own counter); a budget stops the run cleanly; keys never reach any record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, run_harness, write_gsm8k
from tests.fault_server import FaultServer, status

pytestmark = pytest.mark.timeout(300)

N_DOCS = 30
KEY_ENV = "OPENAI_COMPATIBLE_API_KEY"


@pytest.fixture(scope="module")
def many_docs(tmp_path_factory) -> Path:
    rows = [(f"Question {i}: what is {i} plus {i}?", f"{i} + {i} = <<{i}+{i}={2 * i}>>{2 * i}.\n#### {2 * i}")
            for i in range(N_DOCS)]
    return write_gsm8k(tmp_path_factory.mktemp("many"), test=rows)


def answer_from_prompt(payload) -> str:
    """Answers every question right: the last user message ends with 'what is i plus i?'."""
    text = payload["messages"][-1]["content"]
    i = int(text.rsplit("what is ", 1)[1].split(" plus")[0])
    return f"The answer is {2 * i}.\n#### {2 * i}"


def overrides(server: FaultServer, results: Path, *extra: str) -> list[str]:
    return ["model=openai-compatible", f"model.base_url={server.base_url}", "model.model_id=m",
            "task=gsm8k", f"task.dataset_path={results.parent / 'data'}", "task.dataset_sha256=null", "task.num_fewshot=0",
            f"results_dir={results}", "tracking=none", "claims.enabled=false", *extra]


@pytest.fixture
def workdir(tmp_path, many_docs) -> Path:
    (tmp_path / "data").symlink_to(many_docs, target_is_directory=True)
    return tmp_path / "results"


def summaries(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("runs/*/summary.json"), key=os.path.getmtime)]


def test_storm_every_sample_scored_or_recorded_as_error_then_rerun_retries_only_those(workdir):
    # With no retries, a 500 or a malformed answer fails its document; 503 (overloaded) is a slow-down
    # answer, waited out (briefly here) rather than failed.
    with FaultServer(content_fn=answer_from_prompt, fault_rates={"500": 0.15, "503": 0.1, "malformed": 0.05},
                     fault_headers={"retry-after-ms": "1"}, seed=7) as server:
        args = overrides(server, workdir, "model.max_retries=0", "model.concurrency=4")
        first = run_harness(*args)
        assert first.returncode == 0, first.stderr[-3000:]
        summary = summaries(workdir)[-1]
        task = summary["tasks"]["gsm8k"]
        faults = task["n_errors"]
        assert faults > 0 and server.outcomes["503"] > 0
        # None lost, none duplicated: answered + errors = documents; each error is a failed answer.
        assert task["n"] + faults == N_DOCS and summary["n_errors"] == faults
        assert server.outcomes["500"] + server.outcomes["malformed"] == faults
        assert summary["complete"] is False and "INCOMPLETE" in first.stdout
        assert task["value"] == 1.0  # every answered document is right; failures are not scored as wrong
        errors = [json.loads(line) for line in (workdir / "runs" / summary["run_id"] / "errors.jsonl").open()]
        assert len(errors) == faults and {e["error"]["kind"] for e in errors} <= {"server_error", "malformed"}
        rows = [json.loads(line) for line in (workdir / "runs" / summary["run_id"] / "samples.jsonl").open()]
        failed_docs = {r["doc_key"] for r in rows if r.get("error")}
        assert len(failed_docs) == faults and all(r["score"] is None for r in rows if r.get("error"))

        server.fault_rates = {}
        received_before = server.received
        second = run_harness(*args)
        assert second.returncode == 0, second.stderr[-3000:]
        again = summaries(workdir)[-1]
        resent = {json.dumps(b["messages"]) for b in server.bodies()[received_before:]}
        assert server.received - received_before == len(resent) == faults  # only the failed ones, once each
        assert again["complete"] is True and again["tasks"]["gsm8k"]["n"] == N_DOCS
        assert again["cache_hits"] == N_DOCS - faults and server.completed == N_DOCS


def test_kill_9_mid_run_then_same_command_resumes_and_bills_nothing_twice(workdir):
    with FaultServer(content_fn=answer_from_prompt, latency_s=0.4) as server:
        args = overrides(server, workdir, "model.concurrency=2")
        process = subprocess.Popen([sys.executable, "-m", "harness", "progress=false", *args], cwd=PROJECT_ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Kill while two requests are in flight and the last completion is well behind us (its cache
        # write is done): the in-flight ones never completed, so they are not billed.
        last_change, seen = time.monotonic(), 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if server.completed != seen:
                seen, last_change = server.completed, time.monotonic()
            if seen >= 6 and server.in_flight == 2 and time.monotonic() - last_change > 0.15:
                break
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        completed_before_kill = server.completed
        assert 6 <= completed_before_kill < N_DOCS
        assert summaries(workdir) == []  # no summary: the killed run did not finish

        resumed = run_harness(*args)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        summary = summaries(workdir)[-1]
        assert summary["complete"] is True and summary["tasks"]["gsm8k"]["n"] == N_DOCS
        assert summary["cache_hits"] == completed_before_kill
        assert summary["requests_sent"] == N_DOCS - completed_before_kill
        assert server.completed == N_DOCS  # every document billed exactly once across both runs


def test_budget_stops_before_it_could_be_exceeded(workdir):
    # $1 per 1,000 tokens; each answer reports 5 + 2 tokens = $0.007, but the worst case the guard must
    # assume is the prompt's bytes plus max_tokens = 16: each request needs ~$0.15 of headroom.
    with FaultServer(content_fn=answer_from_prompt) as server:
        result = run_harness(*overrides(server, workdir, "model.concurrency=1", "model.generation.max_tokens=16",
                                        "model.pricing.input_per_mtok=1000", "model.pricing.output_per_mtok=1000",
                                        "budget.max_usd=0.25"))
        assert result.returncode == 0, result.stderr[-3000:]
        summary = summaries(workdir)[-1]
        assert summary["cost_usd_new"] <= 0.25
        assert summary["requests_sent"] == server.received > 0
        assert summary["n_errors"] == N_DOCS - server.received and summary["complete"] is False
        errors = [json.loads(line) for line in (workdir / "runs" / summary["run_id"] / "errors.jsonl").open()]
        assert {e["error"]["kind"] for e in errors} == {"budget"} and "budget.max_usd" in errors[0]["error"]["message"]


def test_api_key_never_reaches_records_mlflow_logs_or_errors(workdir):
    secret = "sk-SENTINEL-7f3a9c"
    with FaultServer(content_fn=answer_from_prompt) as server:
        result = run_harness(*[o for o in overrides(server, workdir, "limit=3") if o != "tracking=none"],
                             env={KEY_ENV: secret})
        assert result.returncode == 0, result.stderr[-3000:]
        assert server.requests[0]["headers"]["Authorization"] == f"Bearer {secret}"  # it was used
        server.plan(status(401, {"error": {"message": f"invalid key {secret[:6]}..."}}))
        failed = run_harness(*[o for o in overrides(server, workdir, "limit=4") if o != "tracking=none"],
                             "cache.enabled=false", env={KEY_ENV: secret})
    assert failed.returncode == 2 and "rejected the API key" in failed.stderr
    for text in (result.stdout, result.stderr, failed.stdout, failed.stderr):
        assert secret not in text
    files = [p for p in workdir.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and any(p.name == "summary.json" for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path


def test_a_failure_that_hits_every_request_stops_the_run_early(workdir):
    # A parameter the server refuses (400 on every request) is systematic: stop, say why, exit 2.
    with FaultServer(fault_rates={"400": 1.0}) as server:
        result = run_harness(*overrides(server, workdir, "model.concurrency=1"))
    assert result.returncode == 2
    assert "the first 10 requests all failed" in result.stderr and "400" in result.stderr
    assert 10 <= server.received <= 10 + 1 and summaries(workdir) == []  # at most one more already in flight


@pytest.mark.parametrize("billed_factor", [1.0, 1.5])
def test_billing_reconciled_against_the_balance_endpoint(workdir, billed_factor):
    # Each answer reports 5 + 2 tokens; at $1000 / $2000 per 1M that is $0.009 computed per request.
    per_request = (5 * 1000 + 2 * 2000) / 1e6
    with FaultServer(content_fn=answer_from_prompt, balance_usd=50.0,
                     price_per_completion_usd=per_request * billed_factor) as server:
        result = run_harness(*overrides(server, workdir, "limit=8", "model.pricing.input_per_mtok=1000",
                                        "model.pricing.output_per_mtok=2000",
                                        f"model.balance_url=http://127.0.0.1:{server.port}/user/balance"))
        balance_reads = [r for r in server.requests if r["path"] == "/user/balance"]
    assert result.returncode == 0, result.stderr[-3000:]
    billing = summaries(workdir)[-1]["billing"]
    assert len(balance_reads) == 2 and billing["balance_before"] == pytest.approx(50.0)
    assert billing["computed_usd"] == pytest.approx(8 * per_request)
    assert billing["billed"] == pytest.approx(8 * per_request * billed_factor, abs=1e-6)
    assert billing["difference"] == pytest.approx(8 * per_request * (billed_factor - 1), abs=1e-6)


def test_rate_limited_provider_slows_the_run_down_instead_of_failing_it(workdir):
    # At most 2 requests at once, answered 429 beyond that; we start at 16 and must adapt.
    with FaultServer(content_fn=answer_from_prompt, latency_s=0.05, fault_headers={"retry-after-ms": "20"}) as server:
        server.set_capacity(2)
        result = run_harness(*overrides(server, workdir, "model.concurrency=16", "model.max_retries=8"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = summaries(workdir)[-1]
    errors = workdir / "runs" / summary["run_id"] / "errors.jsonl"
    assert summary["complete"] is True, errors.read_text()[:2000]
    assert summary["tasks"]["gsm8k"]["n"] == N_DOCS
    stats = summary["endpoint"]["concurrency"]
    assert stats["ceiling"] == 16 and stats["min_limit"] <= 4 and stats["rate_limited"] == server.outcomes["429"] > 0


def test_dry_run_needs_no_key_and_starts_no_server(workdir, monkeypatch):
    """A paid API without its key set, and the managed local server: nothing is started or sent."""
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    data = ["task=gsm8k", f"task.dataset_path={workdir.parent / 'data'}", "task.dataset_sha256=null",
            "task.num_fewshot=0", f"results_dir={workdir}", "tracking=none", "claims.enabled=false", "limit=5"]
    paid = run_harness("model=v4-flash", "dry_run=true", *data)
    assert paid.returncode == 0, paid.stderr[-3000:]
    (plan,) = [json.loads(p.read_text()) for p in workdir.glob("runs/*/dry_run.json")]
    estimate = plan["estimate"]
    assert (estimate["requests"], estimate["cached"]) == (5, 0)
    # No history: prompt bytes / 4 at the book's input price now, plus max_tokens (8192) of output.
    import datetime as dt

    from harness.spend.price_book import load_book

    rates, period, window, _ = load_book().schedule("deepseek-v4-flash").rates_at(dt.datetime.now(dt.timezone.utc))
    assert estimate["output_tokens"] == 5 * 8192
    assert estimate["cost_usd"] == pytest.approx(
        (estimate["prompt_bytes"] / 4 * rates.input_per_mtok + 5 * 8192 * rates.output_per_mtok) / 1e6, rel=1e-3)
    ways = {w["way"]: w for w in estimate["ways"]}
    assert ways["standard"]["price"] == " · ".join(p for p in (period.id, window) if p)
    assert ways["batch"]["cost_usd"] is None  # DeepSeek has no batch API
    assert "ways to run it" in paid.stdout
    local = run_harness("dry_run=true", *data)  # the default model: a managed llama.cpp server
    assert local.returncode == 0, local.stderr[-3000:]
    assert not list(workdir.glob("runs/*/server.log")) and "nothing was sent" in local.stdout


def test_impossible_usage_and_empty_answers_neither_crash_nor_bill_nonsense_nor_score_as_wrong(workdir):
    """Usage as text and 10^12 tokens: answers kept, usage billed at the request's worst case, counted and
    warned about; content null: an error (not a wrong answer), retried by the same command."""
    from tests.fault_server import chat_body, null_content, ok

    with FaultServer(content_fn=answer_from_prompt) as server:
        args = overrides(server, workdir, "model.concurrency=1", "model.max_retries=0", "limit=6",
                         "model.generation.max_tokens=16", "model.pricing.input_per_mtok=1000",
                         "model.pricing.output_per_mtok=1000", "run_id=fixed-id")
        server.plan(ok(chat_body("#### 0", usage={"prompt_tokens": "many", "completion_tokens": 2})),
                    ok(chat_body("#### 2", prompt_tokens=10 ** 12, completion_tokens=2)),
                    null_content())
        first = run_harness(*args)
        assert first.returncode == 0, first.stderr[-3000:]
        summary = summaries(workdir)[-1]
        assert summary["usage"]["n_suspect"] == 2 and summary["usage"]["n_estimated"] == 0
        assert summary["cost_usd"] < 2.0  # 5 answers at their bounds (~$0.1 each), not $10^9
        assert summary["n_errors"] == 1 and summary["complete"] is False
        errors = [json.loads(line) for line in (workdir / "runs" / summary["run_id"] / "errors.jsonl").open()]
        assert [e["error"]["kind"] for e in errors] == ["empty"]
        rows = [json.loads(line) for line in (workdir / "runs" / summary["run_id"] / "samples.jsonl").open()]
        assert len(rows) == 6 and [r["usage_status"] for r in rows].count("suspect") == 2
        assert "WARNING usage" in first.stdout
        received = server.received
        second = run_harness(*args)
        assert second.returncode == 0, second.stderr[-3000:]
        assert server.received == received + 1  # only the empty one is asked again
        # The same run_id resumed the INCOMPLETE run in place; its first summary is kept beside.
        run = workdir / "runs" / "fixed-id"
        assert json.loads((run / "summary.json").read_text())["complete"] is True
        assert json.loads((run / "summary.previous.json").read_text())["complete"] is False
        assert len(list(workdir.glob("runs/*"))) == 1
