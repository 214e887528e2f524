"""model.batch=true against loopback fakes of OpenAI's Batch API and Anthropic's Message Batches
(tests/batch_server.py): answers land in the cache and records like online ones, at half the price;
a run killed after submitting resumes by polling and never submits again; failed and expired items
are retried online or recorded as errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.batch_server import AnthropicBatchServer, OpenAIBatchServer
from tests.conftest import PROJECT_ROOT, run_harness, write_gsm8k

pytestmark = pytest.mark.timeout(300)

N_DOCS = 8
KEYS = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-ant-test"}
PROVIDERS = {
    "openai": (OpenAIBatchServer, "gpt-5.5"),
    "anthropic": (AnthropicBatchServer, "claude-opus-4.7"),
}


def answer(body) -> str:
    """The right answer to 'Question i: what is i plus i?' in either API's request body."""
    messages = body.get("messages") or []
    content = messages[-1]["content"]
    text = content if isinstance(content, str) else " ".join(part.get("text", "") for part in content)
    i = int(text.rsplit("what is ", 1)[1].split(" plus")[0])
    return f"The answer is {2 * i}.\n#### {2 * i}"


@pytest.fixture
def data(tmp_path) -> Path:
    rows = [(f"Question {i}: what is {i} plus {i}?", f"#### {2 * i}") for i in range(N_DOCS)]
    return write_gsm8k(tmp_path / "data", test=rows)


def args(model: str, server, data: Path, results: Path, *extra: str) -> list[str]:
    return [f"model={model}", f"model.base_url={server.base_url}", "model.stream=false", "task=gsm8k",
            f"task.dataset_path={data}", "task.dataset_sha256=null", "task.num_fewshot=0", f"results_dir={results}",
            f"cache.path={results}/cache.sqlite", "tracking=none", "claims.enabled=false",
            "model.batch_poll_s=0.2", *extra]


def summary_of(results: Path) -> dict:
    paths = sorted(results.glob("runs/*/summary.json"), key=os.path.getmtime)
    return json.loads(paths[-1].read_text())


def make_server(provider: str, **knobs):
    cls, model = PROVIDERS[provider]
    return cls(content_fn=answer, **knobs), model


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_batch_run_scores_like_an_online_run_at_half_the_dollars(provider, data, tmp_path):
    server, model = make_server(provider)
    with server:
        batched = run_harness(*args(model, server, data, tmp_path / "batch", "model.batch=true"), env=KEYS)
        online = run_harness(*args(model, server, data, tmp_path / "online"), env=KEYS)
        created, online_requests = len(server.batches_created), len(server.online_requests)
    assert batched.returncode == 0, batched.stderr[-3000:]
    assert online.returncode == 0, online.stderr[-3000:]
    assert created == 1 and online_requests == N_DOCS  # the batch run sent nothing online
    b, o = summary_of(tmp_path / "batch"), summary_of(tmp_path / "online")
    assert b["tasks"]["gsm8k"]["value"] == o["tasks"]["gsm8k"]["value"] == 1.0
    assert b["requests_sent"] == N_DOCS and b["cache_hits"] == 0 and b["complete"]
    assert b["usage"]["input_tokens"] == o["usage"]["input_tokens"] > 0
    assert b["cost_usd"] == pytest.approx(o["cost_usd"] / 2) and b["cost_usd"] > 0
    (use,) = b["prices_used"]
    assert use["price"].endswith("· batch") and use["requests"] == N_DOCS
    # The answers are in the shared cache: the same command again buys nothing.
    again = run_harness(*args(model, server, data, tmp_path / "batch", "model.batch=true"), env=KEYS)
    assert again.returncode == 0 and summary_of(tmp_path / "batch")["cache_hits"] == N_DOCS


def submit_then_kill(model: str, server, data: Path, results: Path, *extra: str) -> None:
    """Start a batch run, kill -9 it as soon as its journal holds the batch id."""
    command = [sys.executable, "-m", "harness", "progress=false",
               *args(model, server, data, results, "model.batch=true", *extra)]
    err = results.parent / f"{results.name}.first.err"
    first = subprocess.Popen(command, cwd=PROJECT_ROOT, env={**os.environ, **KEYS}, stdout=subprocess.DEVNULL,
                             stderr=open(err, "w"), start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(json.loads(p.read_text()).get("state") == "submitted"
                  for p in results.glob("batches/*.json")) and time.monotonic() < deadline:
        assert first.poll() is None, err.read_text()[-3000:]
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_kill_9_after_submitting_resumes_by_polling_and_never_resubmits(provider, data, tmp_path):
    server, model = make_server(provider, process_after_s=6.0)
    results = tmp_path / "results"
    with server:
        submit_then_kill(model, server, data, results)
        assert len(server.batches_created) == 1 and not list(results.glob("runs/*/summary.json"))
        resumed = run_harness(*args(model, server, data, results, "model.batch=true"), env=KEYS)
        created, online_requests = len(server.batches_created), len(server.online_requests)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming 1 batch(es)" in resumed.stdout and "polling, not re-submitting" in resumed.stdout
    assert created == 1 and online_requests == 0
    summary = summary_of(results)
    assert summary["tasks"]["gsm8k"]["value"] == 1.0 and summary["complete"]
    assert summary["prices_used"][0]["requests"] == N_DOCS and summary["prices_used"][0]["price"].endswith("· batch")
    (journal,) = [json.loads(p.read_text()) for p in results.glob("batches/*.json")]
    assert journal["state"] == "read" and len(journal["items"]) == N_DOCS


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("fault", ["fail_some", "expire"])
def test_failed_and_expired_items_are_retried_online_or_recorded(provider, fault, data, tmp_path):
    knobs = {"fail_ids": lambda custom_id: custom_id.endswith(("-1", "-4"))} if fault == "fail_some" else {"expire": True}
    server, model = make_server(provider, **knobs)
    with server:
        retried = run_harness(*args(model, server, data, tmp_path / "retried", "model.batch=true"), env=KEYS)
        sent_online = len(server.online_requests)
        recorded = run_harness(*args(model, server, data, tmp_path / "recorded", "model.batch=true",
                                     "model.batch_retry_online=false"), env=KEYS)
        sent_online_after = len(server.online_requests)
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert recorded.returncode == 0, recorded.stderr[-3000:]
    r = summary_of(tmp_path / "retried")
    failed = sent_online
    assert failed >= (2 if fault == "fail_some" else 1)
    assert r["complete"] and r["tasks"]["gsm8k"]["value"] == 1.0 and r["requests_sent"] == N_DOCS
    uses = {u["price"].endswith("· batch"): u["requests"] for u in r["prices_used"]}
    assert uses == ({True: N_DOCS - failed, False: failed} if failed < N_DOCS else {False: failed})
    # Not retried online: the same items are errors, with the batch's reason, and nothing was sent online.
    assert sent_online_after == sent_online
    s = summary_of(tmp_path / "recorded")
    assert not s["complete"] and s["n_errors"] == failed
    errors = [json.loads(line) for p in (tmp_path / "recorded").glob("runs/*/errors.jsonl")
              for line in p.read_text().splitlines()]
    assert len(errors) == failed and all(e["error"]["kind"] in ("batch_error", "expired") for e in errors)


def test_a_kill_between_the_create_call_and_the_journal_write_is_found_by_the_batch_tag(tmp_path, monkeypatch):
    """OpenAI batches carry the journal's tag in their metadata: a run that died right after creating the
    batch (journal still "submitting") finds that batch on the next start instead of creating another."""
    import asyncio

    from harness.common.exchange import ChatRequest
    from harness.config import ModelConfig
    from harness.endpoints.batch import BatchJournal, BatchRunner
    from harness.endpoints.batch_apis import OpenAIBatches

    class DiesAfterCreate(OpenAIBatches):
        async def submit(self, items, tag):
            await super().submit(items, tag)
            raise KeyboardInterrupt  # killed before the journal learns the batch id

    requests = {f"key{i}": ChatRequest(messages=({"role": "user", "content": f"Question {i}: what is {i} plus {i}?"},),
                                       model_id="gpt-5.5", params={"max_tokens": 64}) for i in range(3)}
    with OpenAIBatchServer(content_fn=answer) as server:
        model = ModelConfig(name="gpt-5.5", provider="openai", model_id="gpt-5.5", api_key_env="OPENAI_API_KEY")
        journal = BatchJournal(tmp_path / "batches", "identity")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

        async def first() -> None:
            api = DiesAfterCreate(model, server.base_url)
            try:
                await BatchRunner(api, journal, 0.05, show_progress=False).run(requests, lambda *a: None)
            finally:
                await api.aclose()

        with pytest.raises(KeyboardInterrupt):
            asyncio.run(first())
        (entry,) = journal.open_entries()
        assert entry["state"] == "submitting" and entry["batch_id"] is None and len(server.batches_created) == 1

        got: dict[str, object] = {}

        async def second() -> None:
            api = OpenAIBatches(model, server.base_url)
            try:
                await BatchRunner(api, journal, 0.05, show_progress=False).run(
                    requests, lambda key, outcome, at: got.__setitem__(key, outcome))
            finally:
                await api.aclose()

        asyncio.run(second())
        assert len(server.batches_created) == 1  # found by its tag, not created again
    assert sorted(got) == sorted(requests) and all(getattr(o, "text", "").endswith(f"#### {2 * int(k[3:])}")
                                                   for k, o in got.items())
    assert journal.open_entries() == []  # read: closed


def test_another_tasks_open_batch_is_left_alone_and_a_resume_reads_every_paid_answer_whatever_the_budget(tmp_path):
    """Found by an adversary: a run of another task used to wait on and close a killed run's batch (paid
    twice), and a resume under a small budget read only what the budget admitted (the rest bought again)."""
    other = write_gsm8k(tmp_path / "other", test=[(f"Question {i}: what is {i} plus {i}?", f"#### {2 * i}")
                                                   for i in range(100, 103)])
    data = write_gsm8k(tmp_path / "data", test=[(f"Question {i}: what is {i} plus {i}?", f"#### {2 * i}")
                                                 for i in range(N_DOCS)])
    results = tmp_path / "results"
    with OpenAIBatchServer(content_fn=answer, process_after_s=6.0) as server:
        submit_then_kill("gpt-5.5", server, data, results)
        server.process_after_s = 0.2  # batches created from now on end quickly
        b = run_harness(*args("gpt-5.5", server, other, results, "model.batch=true"), env=KEYS)
        assert b.returncode == 0, b.stderr[-3000:]
        assert "resuming" not in b.stdout and len(server.batches_created) == 2
        (killed,) = [json.loads(p.read_text()) for p in results.glob("batches/*.json")
                     if json.loads(p.read_text())["state"] == "submitted"]  # left open for its own run
        # The killed run's command again, with a budget far below what its batch cost: every answer is read.
        a = run_harness(*args("gpt-5.5", server, data, results, "model.batch=true", "budget.max_usd=0.000001"),
                        env=KEYS)
        created, online = len(server.batches_created), len(server.online_requests)
    assert a.returncode == 0, a.stderr[-3000:]
    assert "resuming 1 batch(es)" in a.stdout and killed["batch_id"] in a.stdout
    assert created == 2 and online == 0
    summary = summary_of(results)
    assert summary["complete"] and summary["prices_used"][0]["requests"] == N_DOCS


def test_the_budget_admits_a_batch_at_the_batch_price_and_refuses_the_rest_without_buying_online(tmp_path, data):
    """gpt-5.5's worst case per request (prompt bound + 32,768 output tokens at $30 / 1M) is ~$0.98 at list
    price, ~$0.49 in a batch: a $1.50 budget admits 3 of 8 into the batch; the other 5 are budget errors."""
    with OpenAIBatchServer(content_fn=answer) as server:
        result = run_harness(*args("gpt-5.5", server, data, tmp_path / "r", "model.batch=true", "budget.max_usd=1.5"),
                             env=KEYS)
        online = len(server.online_requests)
        (created,) = server.batches_created
    assert result.returncode == 0, result.stderr[-3000:]
    summary = summary_of(tmp_path / "r")
    assert online == 0 and summary["prices_used"][0]["requests"] == 3 and summary["n_errors"] == N_DOCS - 3
    errors = [json.loads(line) for p in (tmp_path / "r").glob("runs/*/errors.jsonl") for line in p.read_text().splitlines()]
    assert {e["error"]["kind"] for e in errors} == {"budget"}


def test_a_second_run_on_the_same_batch_journal_is_refused_while_the_first_holds_it(tmp_path, data):
    import fcntl

    folder = tmp_path / "r" / "batches"
    folder.mkdir(parents=True)
    with open(folder / ".lock", "a+") as held, OpenAIBatchServer(content_fn=answer) as server:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242")
        held.flush()
        result = run_harness(*args("gpt-5.5", server, data, tmp_path / "r", "model.batch=true"), env=KEYS)
        created = len(server.batches_created)
    assert result.returncode != 0 and created == 0
    assert "another run is sending or polling batches" in result.stderr and "pid 4242" in result.stderr
    assert "Traceback" not in result.stderr
