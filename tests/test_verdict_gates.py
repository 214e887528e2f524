"""The class of runs that cannot speak to a claim: answers cut off under any name, reasoning below the
claim's, failed items under repeats. Each must give `inconclusive`, never `below claim`."""
import dataclasses
import json

import pytest

from harness.claims.registry import Claim, Protocol, Source
from harness.claims.verdicts import BELOW, INCONCLUSIVE, judge
from harness.common.exchange import ChatRequest, Completion, Usage
from harness.common.stats import mean_estimate
from harness.config import GenerationConfig, ModelConfig, RunConfig, TaskConfig
from harness.endpoints.usage_checks import vet
from tests.conftest import run_harness
from tests.fault_server import FaultServer
from tests.test_repeats import GOLD, GSM8K

REQUEST = ChatRequest(messages=({"role": "user", "content": "q" * 40},), model_id="m", params={"max_tokens": 64})


def _completion(finish, output_tokens=10):
    return Completion(text="... then multiply by", reasoning=None, finish_reason=finish,
                      usage=Usage(input_tokens=10, output_tokens=output_tokens), served_model=None,
                      system_fingerprint=None, latency_s=0.1, usage_reported=True)


@pytest.mark.parametrize("finish", ["length", "max_tokens", "MAX_TOKENS", "max_output_tokens",
                                    "model_context_window_exceeded"])
def test_every_providers_name_for_the_token_limit_is_length(finish):
    assert vet(_completion(finish), REQUEST).finish_reason == "length"


def test_a_stop_that_used_all_of_max_tokens_is_a_cut_off_named_in_the_note():
    cut = vet(_completion("stop", output_tokens=64), REQUEST)
    assert cut.finish_reason == "length" and "'stop' with all 64 max_tokens used" in cut.usage_note
    assert vet(_completion("stop", output_tokens=63), REQUEST).finish_reason == "stop"
    assert vet(_completion("content_filter"), REQUEST).finish_reason == "content_filter"  # scored as cut off


CLAIM = Claim(id="c", kind="score", model_as_named="M (Max)", benchmark="MMLU-Pro", value=89.1, unit="percent",
              source=Source("s", "2026-04"), model="m", task="mmlu_pro_official", protocol=Protocol(reasoning="max"))


def _judge(claim=CLAIM, provider="openai_compat", thinking=None, effort=None):
    cfg = RunConfig(model=ModelConfig(name="m", model_id="m", provider=provider, thinking=thinking,
                                      generation=GenerationConfig(reasoning_effort=effort)),
                    task=TaskConfig(name="mmlu_pro_official", lm_eval_task="x", benchmark="MMLU-Pro"))
    e = mean_estimate([1] * 800 + [0] * 200)
    summary = {"tasks": {"t": {"value": e.value, "ci95": list(e.ci95), "n": 1000, "cost_usd": 0.0}},
               "dataset": {}, "cost_usd": 0.0}
    [v] = judge([claim], cfg, summary)
    return v


@pytest.mark.parametrize("provider, thinking, effort, claimed, why", [
    ("anthropic", None, None, "max", "thinking off"),  # no thinking field sent: Claude does not think
    ("openai", None, "none", "xhigh", "thinking off"),  # effort none turns GPT-5.x reasoning off
    ("openai", None, "minimal", "high", "the run at 'minimal'"),
    ("openai_compat", None, "medium", "high", "the run at 'medium'"),
    ("deepseek", True, None, "max", "provider's default effort"),
    ("deepseek", False, None, "medium", "thinking off"),
])
def test_reasoning_below_the_claims_blocks_the_verdict(provider, thinking, effort, claimed, why):
    v = _judge(dataclasses.replace(CLAIM, protocol=Protocol(reasoning=claimed)), provider, thinking, effort)
    assert v.status == INCONCLUSIVE and v.strict_status == BELOW and why in v.detail


@pytest.mark.parametrize("provider, thinking, effort, claimed", [
    ("deepseek", True, "max", "max"), ("openai", None, "xhigh", "high"), ("deepseek", True, None, "high"),
    ("anthropic", True, None, "on"), ("openai", None, None, "unknown"),
])
def test_a_run_that_reasons_as_much_is_judged(provider, thinking, effort, claimed):
    v = _judge(dataclasses.replace(CLAIM, protocol=Protocol(reasoning=claimed)), provider, thinking, effort)
    assert v.status == BELOW


def test_failed_items_under_repeats_weigh_as_items(tmp_path):
    """20 items x 4 repeats, 8 items fail: 40% of the items. Counted right they would make 55%."""
    questions = list(GSM8K.question[:20])

    def answer(payload):
        item = next(i for i, q in enumerate(questions) if q in payload["messages"][-1]["content"])
        if item >= 12:
            return ""  # an empty answer: retried, then recorded as a failed request
        right = payload["seed"] < item % 3
        return f"The final answer is {GOLD[questions[item]] if right else 999999}"

    claims = tmp_path / "claims"
    claims.mkdir()
    (claims / "c.yaml").write_text(
        "claims:\n  - {id: half, kind: score, model_as_named: M, model: openai-compatible, benchmark: GSM8K,\n"
        "     task: gsm8k_chat, value: 50, unit: percent, source: {publication: s, date: '2026-01'}}\n")
    results = tmp_path / "results"
    with FaultServer(content_fn=answer) as server:
        done = run_harness("model=openai-compatible", f"model.base_url={server.base_url}", "model.model_id=m",
                           "model.max_retries=1", "task=gsm8k_chat", "task.repeats=4", "limit=20",
                           "model.generation.temperature=0.7", f"claims.dir={claims}",
                           "claims.max_unscorable_fraction=0.2", f"results_dir={results}", "tracking=none",
                           f"cache.path={results}/cache.sqlite")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    task = summary["tasks"]["gsm8k_chat"]
    assert task["n_errors"] == 8 and task["n"] == 12 and task["unscorable_fraction"] == pytest.approx(8 / 20)
    right = sum(min(4, i % 3) for i in range(12))  # repeat r is right when r < item % 3
    assert task["unscorable_range"]["generous"]["value"] == pytest.approx((right + 8 * 4) / 80)
    assert task["unscorable_range"]["strict"]["value"] == pytest.approx(right / 80)
    [verdict] = summary["claims"]
    assert verdict["status"] == INCONCLUSIVE, verdict["detail"]


def test_an_answer_after_a_lone_closing_think_tag_is_the_answer():
    """Chat templates that open <think> themselves leave only `</think>` in the content (a server without a
    reasoning parser): the answer is what follows it, so MRCR's prefix check sees the answer's start."""
    from harness.endpoints.openai_format import split_reasoning

    assert split_reasoning({"content": "plan it...</think>\n\nabc123 the poem"}) == ("abc123 the poem", "plan it...")
    assert split_reasoning({"content": "<think>a</think> b"}) == ("b", "a")
    assert split_reasoning({"content": "no tags"}) == ("no tags", None)
