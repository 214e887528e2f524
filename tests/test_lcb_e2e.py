"""LiveCodeBench through the whole spine (`python -m harness task=livecodebench ...`): the official
prompt on the wire, solutions graded in the sandbox, pass@1 with a CI overall and per difficulty,
tokens and cost, the isolation record; against a scripted server and against the real SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.benchmarks.livecodebench.dataset import load_problems
from harness.benchmarks.livecodebench.prompt import SYSTEM_MESSAGE_GENERIC, question_prompt
from tests.conftest import run_harness
from tests.fault_server import FaultServer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "livecodebench"
SOLUTIONS = json.loads((FIXTURES / "solutions.json").read_text())
PROBLEMS = load_problems(FIXTURES, "release_v3")
# The scripted model answers these correctly and the rest with the wrong solution.
SOLVED = {"9001", "abc900_a", "1900_A", "abc901_b", "9003"}
pytestmark = pytest.mark.timeout(600)


def scripted_answer(payload) -> str:
    user = payload["messages"][-1]["content"]
    (problem,) = [p for p in PROBLEMS if p.question_content in user]
    code = SOLUTIONS[problem.question_id]["correct" if problem.question_id in SOLVED else "wrong"]
    # A draft first, the final answer last: the default extraction takes the last block.
    return f"Draft:\n```python\nprint('draft')\n```\nFinal:\n```python\n{code}\n```\n"


def lcb_args(results: Path, *extra: str) -> list[str]:
    return ["task=livecodebench", f"task.dataset_path={FIXTURES}", "task.loader_kwargs.release=release_v3",
            f"results_dir={results}", *extra]


def test_scripted_model_scores_exactly_what_its_solutions_deserve(tmp_path):
    results = tmp_path / "results"
    with FaultServer(content_fn=scripted_answer, prompt_tokens=300, completion_tokens=120) as server:
        done = run_harness("model=openai-compatible", f"model.base_url={server.base_url}", "model.model_id=m",
                           "model.pricing.input_per_mtok=2", "model.pricing.output_per_mtok=10",
                           *lcb_args(results))
        bodies = server.bodies()
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    task = summary["tasks"]["livecodebench"]
    assert task["metric"] == "pass_at_1" and task["n"] == len(PROBLEMS) == 8
    assert task["value"] == pytest.approx(len(SOLVED) / 8)
    assert task["ci95"][0] < 5 / 8 < task["ci95"][1]
    by_difficulty = {d: [p for p in PROBLEMS if p.difficulty == d] for d in ("easy", "medium", "hard")}
    for difficulty, members in by_difficulty.items():
        expected = sum(p.question_id in SOLVED for p in members) / len(members)
        assert task["metrics"][f"pass_at_1_{difficulty}"] == pytest.approx(expected), difficulty
    # The official prompt on the wire: system message, then their user template, no stop sequences.
    first = bodies[0]
    assert first["messages"][0] == {"role": "system", "content": SYSTEM_MESSAGE_GENERIC}
    prompts = {question_prompt(p.question_content, p.starter_code) for p in PROBLEMS}
    assert {b["messages"][1]["content"] for b in bodies} == prompts
    assert "stop" not in first and first["max_tokens"] == 1024  # the model config's max_tokens wins
    # Tokens and dollars: 8 requests x (300 in, 120 out) at $2 / $10 per 1M.
    assert summary["usage"]["input_tokens"] == 2400 and summary["usage"]["output_tokens"] == 960
    assert summary["cost_usd"] == pytest.approx((2400 * 2 + 960 * 10) / 1e6)
    sandbox = summary["sandbox"]  # which bwrap, its version and options, and what its probe saw inside
    assert sandbox["mode"] == "bubblewrap" and sandbox["version"].startswith("bubblewrap ")
    assert Path(sandbox["binary"]).exists() and "--unshare-all" in sandbox["options"]
    assert sandbox["held"]["uid"] == 65534 and sandbox["held"]["network_interfaces"] == ["lo"]
    rows = [json.loads(line) for line in next(results.glob("runs/*/samples.jsonl")).open()]
    assert sorted(r["doc_key"] for r in rows) == sorted(f"question_id:{p.question_id}" for p in PROBLEMS)
    for row in rows:
        (grade,) = row["graded"]
        assert grade["passed"] == (row["score"] == 1.0)
        assert row["extracted"] and "draft" not in row["extracted"]  # the last block was graded
    assert {r["doc_key"] for r in rows if r["graded"][0]["status"] == "passed"} == {f"question_id:{q}" for q in SOLVED}


def test_no_usable_sandbox_stops_before_any_request_and_unsafe_local_is_recorded(tmp_path):
    """bwrap that cannot create namespaces (a locked-down container, stood in for by a script that fails as
    bwrap does there): exit 2 naming the fix, nothing sent; with sandbox.unsafe_local=true the run goes on
    and says so in summary.json and on the terminal."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'bubblewrap 0.11.0'; exit 0; fi\n"
                    "echo 'bwrap: No permissions to create a new namespace' >&2; exit 1\n")
    fake.chmod(0o755)
    env = {"HARNESS_BWRAP": str(fake)}
    results = tmp_path / "results"
    with FaultServer(content_fn=scripted_answer) as server:
        args = ["model=openai-compatible", f"model.base_url={server.base_url}", "model.model_id=m"]
        refused = run_harness(*args, *lcb_args(results, "limit=2"), env=env)
        assert server.received == 0
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "No permissions to create a new namespace" in refused.stderr
        assert "sandbox.unsafe_local=true" in refused.stderr and "Traceback" not in refused.stderr
        unsafe = run_harness(*args, *lcb_args(results, "limit=2", "sandbox.unsafe_local=true"), env=env)
        assert unsafe.returncode == 0, unsafe.stderr[-2000:]
    assert "WITHOUT a sandbox" in unsafe.stdout
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    assert summary["sandbox"]["mode"] == "unsafe_local" and summary["tasks"]["livecodebench"]["n"] == 2


def test_repeated_samples_give_pass_at_1_as_their_mean_and_unbiased_pass_at_5(tmp_path):
    """5 samples per problem for the first 3 problems: the scripted model is right on calls 1, 3, 5 of
    the first (c = 3), always on the second (c = 5), never on the third (c = 0)."""
    first_three = [p.question_id for p in PROBLEMS[:3]]
    calls: dict[str, int] = {}

    def scripted(payload) -> str:
        user = payload["messages"][-1]["content"]
        (problem,) = [p for p in PROBLEMS if p.question_content in user]
        qid = problem.question_id
        calls[qid] = calls.get(qid, 0) + 1
        right = {0: calls[qid] % 2 == 1, 1: True, 2: False}[first_three.index(qid)]
        return f"```python\n{SOLUTIONS[qid]['correct' if right else 'wrong']}\n```"

    results = tmp_path / "results"
    with FaultServer(content_fn=scripted) as server:
        done = run_harness("model=openai-compatible", f"model.base_url={server.base_url}", "model.model_id=m",
                           "model.concurrency=1", "model.generation.temperature=0.7",
                           *lcb_args(results, "task.repeats=5", "limit=3"))
        assert server.completed == 15
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    task = summary["tasks"]["livecodebench"]
    assert task["n"] == 3 and task["value"] == pytest.approx((3 / 5 + 1 + 0) / 3)
    # Unbiased pass@5 with n = 5: 1 - C(n-c, 5)/C(n, 5) = 1, 1, 0 for c = 3, 5, 0.
    assert task["metrics"]["pass_at_5"] == pytest.approx(2 / 3)
    assert task["ci95"][0] < task["value"] < task["ci95"][1]
    # MLflow (local store) has the same numbers under names it accepts.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{results}/mlflow.db")
    (run,) = mlflow.search_runs(experiment_names=["harness"], output_format="list")
    assert run.data.metrics["livecodebench.pass_at_1"] == pytest.approx(task["value"])
    assert run.data.metrics["livecodebench.pass_at_5"] == pytest.approx(2 / 3)


def test_smollm2_runs_livecodebench_end_to_end(require_llama, tmp_path):
    """The embedded local model: near-zero pass rate is expected; the path must be whole."""
    results = tmp_path / "results"
    done = run_harness(*lcb_args(results, "limit=2", "model.generation.max_tokens=48",
                                 "model.server.extra_args=[--n_ctx,4096,--n_threads,1,--seed,1234]"))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    task = summary["tasks"]["livecodebench"]
    assert task["n"] == 2 and 0.0 <= task["value"] <= 1.0 and len(task["ci95"]) == 2
    assert summary["usage"]["output_tokens"] > 0 and summary["usage"]["input_tokens"] > 100
    assert summary["cost_usd"] == 0.0 and summary["complete"] is True
    assert "pass_at_1" in done.stdout
