"""Verdicts on constructed binomial cases with known answers, and protocol mismatches named."""

import dataclasses

import pytest

from harness.claims.registry import Claim, Protocol, Source
from harness.config import GenerationConfig, ModelConfig, PricingConfig, RunConfig, TaskConfig
from harness.common.stats import mean_estimate
from harness.spend.price_book import schedule_for
from harness.spend.price_claims import match_price_claim
from harness.claims.verdicts import (ABOVE, BELOW, CONSISTENT, INCONCLUSIVE, NOT_MEASURED, UNDERPOWERED, judge,
                                     score_status)


def _status(k: int, n: int, claimed_percent: float) -> str:
    e = mean_estimate([1] * k + [0] * (n - k))
    return score_status(claimed_percent / 100, e.value, e.ci95)


@pytest.mark.parametrize("k, n, claimed, expected", [
    (870, 1000, 94.3, BELOW),        # 87.0 [84.8, 88.9]: refuted
    (50, 100, 50.0, CONSISTENT),      # 50.0 [40.4, 59.6]: includes the claim, half-width 9.6 points
    (3, 5, 60.0, UNDERPOWERED),       # 60.0 [23.1, 88.2]: cannot tell
    (3, 5, 5.0, ABOVE),               # even 5 items refute a claim of 5 %
    (990, 1000, 94.3, ABOVE),
    (9, 10, 80.0, UNDERPOWERED),      # includes 80, but the interval is 60 points wide
])
def test_binomial_verdicts(k, n, claimed, expected):
    assert _status(k, n, claimed) == expected


SOURCE = Source("DailyTechWire", "2026-05-25", "DTW benchmark notebook")


def _cfg(thinking=None, effort=None, temperature=0.0, num_fewshot=None, task="mmlu_pro_official") -> RunConfig:
    model = ModelConfig(name="v4-pro", model_id="deepseek-v4-pro", thinking=thinking,
                        generation=GenerationConfig(temperature=temperature, reasoning_effort=effort),
                        pricing=PricingConfig(input_per_mtok=1.74, output_per_mtok=3.48, source="list", effective_date="2026-04"))
    task_cfg = TaskConfig(name=task, lm_eval_task=task, benchmark="MMLU-Pro", num_fewshot=num_fewshot)
    return RunConfig(model=model, task=task_cfg)


def _summary(k: int, n: int, task="mmlu_pro_official", n_docs=12032) -> dict:
    e = mean_estimate([1] * k + [0] * (n - k))
    return {"tasks": {task: {"value": e.value, "ci95": list(e.ci95), "n": n, "cost_usd": 1.25}},
            "dataset": {task: {"n_docs": n_docs}}, "cost_usd": 1.25}


def _claim(**changes) -> Claim:
    base = Claim(id="c", kind="score", model_as_named="DeepSeek V4-Pro-Max", benchmark="MMLU-Pro", value=87.5,
                 unit="percent", source=SOURCE, model="v4-pro", task="mmlu_pro_official",
                 protocol=Protocol(reasoning="max", subset="full", shots=5, temperature=0.0))
    return dataclasses.replace(base, **changes)


def test_a_verdict_names_every_protocol_difference():
    [v] = judge([_claim()], _cfg(thinking=False, num_fewshot=0, task="mmlu_pro_0shot"), _summary(150, 200, "mmlu_pro_0shot"))
    # Thinking off against a "Max" claim: the gap is the protocol's (blocking), so no below-claim verdict.
    assert v.status == INCONCLUSIVE and v.strict_status == BELOW and v.n == 200 and v.measured == pytest.approx(75.0)
    text = " | ".join(v.mismatches)
    assert "reasoning: the claim is at 'max', the run at 'off'" in text
    assert "subset: the claim is on the full set (12,032 items), the run on 200 items" in text
    assert "shots: the claim is 5-shot, the run 0-shot" in text
    assert "task: the claim is checked by mmlu_pro_official, the run used mmlu_pro_0shot" in text
    assert v.cost_usd == 1.25


def test_matching_protocol_has_no_mismatch_and_unknowns_are_listed():
    claim = _claim(protocol=Protocol(reasoning="max", subset="full"))
    [v] = judge([claim], _cfg(thinking=True, effort="max"), _summary(10_500, 12032))
    assert v.mismatches == () and v.status == CONSISTENT
    assert set(v.unknowns) == {"shots", "chain_of_thought", "temperature", "n_samples"}


def test_only_claims_about_this_model_and_benchmark_are_judged():
    claims = [_claim(id="other-model", model="gpt-5.5"), _claim(id="other-bench", benchmark="GSM8K"),
              _claim(id="no-config", model=None), _claim(id="mine")]
    assert [v.claim_id for v in judge(claims, _cfg(), _summary(10, 20))] == ["mine"]


def test_price_claims_against_the_pricing_the_run_used_and_speed_not_measured():
    price_ok = _claim(id="p-in", kind="price", benchmark="price", metric="input", value=1.74, unit="usd_per_mtok",
                      protocol=Protocol())
    price_dtw = _claim(id="p-out", kind="price", benchmark="price", metric="output", value=0.27, unit="usd_per_mtok",
                       protocol=Protocol())
    speed = _claim(id="s", kind="speed", benchmark="speed", metric="time_to_first_token", value=1124, unit="ms",
                   protocol=Protocol())
    cfg = _cfg()
    prices = schedule_for(cfg.model.pricing)  # inline prices: one open period
    matches = {c.id: match_price_claim(prices, c.metric, c.value, "2026-04") for c in (price_ok, price_dtw)}
    summary = {**_summary(1, 2), "prices_used": [{"price": "config", "requests": 2}]}
    verdicts = {v.claim_id: v for v in judge([price_ok, price_dtw, speed], cfg, summary, price_matches=matches)}
    assert verdicts["p-in"].status == CONSISTENT and verdicts["p-in"].measured == 1.74
    assert verdicts["p-out"].status == ABOVE and verdicts["p-out"].measured == 3.48  # billed above the claim
    assert "this run was billed at: config" in verdicts["p-out"].detail
    assert judge([price_ok], cfg, summary)[0].status == NOT_MEASURED  # no book word: not judged
    assert verdicts["s"].status == NOT_MEASURED



def test_power_planning_in_the_verdict():
    [v] = judge([_claim(value=94.3, protocol=Protocol())], _cfg(), _summary(150, 200))
    # Hand formula, one-sided 5 % and 80 % power: ((1.6449*sqrt(.943*.057) + 0.8416*sqrt(.923*.077))/.02)^2
    p0, p1 = 0.943, 0.923
    by_hand = ((1.6448536 * (p0 * (1 - p0)) ** 0.5 + 0.8416212 * (p1 * (1 - p1)) ** 0.5) / 0.02) ** 2
    assert v.items_for_shortfall == int(by_hand) + 1
    assert 2 < v.detectable_shortfall_points < 10  # 200 items see a few points, not 2
    assert f"needs {v.items_for_shortfall} items" in v.detail


def test_data_not_verified_against_the_pins_is_a_named_mismatch():
    """task.dataset_sha256=null runs a copy of one's own: a verdict on it is not about the claimed benchmark."""
    claim = _claim(protocol=Protocol(reasoning="max", subset="full"))
    summary = _summary(10_500, 12032)
    summary["dataset"]["mmlu_pro_official"]["pinned"] = False
    [v] = judge([claim], _cfg(thinking=True, effort="max"), summary)
    assert v.mismatches == ("data: not verified against the pinned hashes (mmlu_pro_official): a copy of your "
                            "own, not necessarily the benchmark the claim is about",)
    summary["dataset"]["mmlu_pro_official"]["pinned"] = True
    [v] = judge([claim], _cfg(thinking=True, effort="max"), summary)
    assert v.mismatches == ()


def _truncated_summary(k: int, n: int, truncated: int, errors: int = 0, task="mmlu_pro_official") -> dict:
    summary = _summary(k, n, task)
    summary["tasks"][task].update(n_truncated=truncated, n_extraction_failed=0, n_errors=errors)
    return summary


def test_unscorable_items_that_decide_the_verdict_make_it_inconclusive_with_the_range():
    claim = _claim(value=80.0, protocol=Protocol())
    # 40 of 200 right, 150 cut off at max_tokens: wrong they give 20% (below 80), right 95% (above 80).
    [v] = judge([claim], _cfg(), _truncated_summary(40, 200, truncated=150))
    assert v.status == INCONCLUSIVE and "150 truncated" in v.detail and "counted wrong" in v.detail
    assert (v.strict_value, v.generous_value) == (pytest.approx(20.0), pytest.approx(95.0))
    assert (v.strict_status, v.generous_status) == (BELOW, ABOVE)
    # 3 truncated of 200 cannot move a 20% score past 80%: the verdict stands, the range is still shown.
    [v] = judge([claim], _cfg(), _truncated_summary(40, 200, truncated=3))
    assert v.status == BELOW and v.generous_value == pytest.approx(21.5)
    # Failed requests count too (not in n): 150 of 350 items failed.
    [v] = judge([claim], _cfg(), _truncated_summary(160, 200, truncated=0, errors=150))
    assert v.status == INCONCLUSIVE and "150 failed request(s)" in v.detail
    # A fixed ceiling on top, when configured.
    [v] = judge([claim], _cfg(), _truncated_summary(40, 200, truncated=3), max_unscorable_fraction=0.01)
    assert v.status == INCONCLUSIVE and "max_unscorable_fraction" in v.detail


def test_thinking_off_against_a_max_reasoning_claim_is_inconclusive():
    claim = _claim(value=87.5, protocol=Protocol(reasoning="max"))
    [v] = judge([claim], _cfg(thinking=False), _summary(150, 200))
    assert v.status == INCONCLUSIVE and "blocking protocol mismatch" in v.detail
    [v] = judge([claim], _cfg(thinking=True, effort="max"), _summary(150, 200))
    assert v.status != INCONCLUSIVE


TRUNCATION_CLAIM = """
claims:
  - id: test-gsm8k-90
    kind: score
    model_as_named: "a model"
    model: openai-compatible
    benchmark: GSM8K
    task: gsm8k
    value: 90.0
    unit: percent
    source: {publication: "a claim written for this test", date: "2026-11-30"}
"""


@pytest.mark.timeout(300)
def test_a_run_whose_answers_are_cut_off_gets_inconclusive_not_below_claim(tmp_path):
    """A loopback server that stops every answer at max_tokens (finish_reason "length", no answer yet)."""
    import json

    from tests.conftest import run_harness, write_gsm8k
    from tests.fault_server import FaultServer, chat_body, ok

    data = write_gsm8k(tmp_path / "data", test=[(f"Question {i}: what is {i} plus {i}?", f"#### {2 * i}")
                                                for i in range(10)])
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "test.yaml").write_text(TRUNCATION_CLAIM)
    cut = chat_body("Let me think about this step by step. First, we", completion_tokens=16)
    cut["choices"][0]["finish_reason"] = "length"
    with FaultServer() as server:
        server.plan(*[ok(cut)] * 10)
        result = run_harness("model=openai-compatible", f"model.base_url={server.base_url}", "model.model_id=m",
                             "task=gsm8k", f"task.dataset_path={data}", "task.dataset_sha256=null",
                             "task.num_fewshot=0", f"results_dir={tmp_path / 'r'}", "tracking=none",
                             f"claims.dir={tmp_path / 'claims'}", "model.generation.max_tokens=16")
    assert result.returncode == 0, result.stderr[-3000:]
    (summary,) = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("runs/*/summary.json")]
    assert summary["tasks"]["gsm8k"]["n_truncated"] == 10 and summary["tasks"]["gsm8k"]["value"] == 0.0
    (verdict,) = summary["claims"]
    assert verdict["status"] == "inconclusive" and verdict["strict_status"] == "below claim"
    assert verdict["generous_value"] == pytest.approx(100.0) and "10 truncated" in verdict["detail"]
    report = next((tmp_path / "r").glob("runs/*/claims.md")).read_text()
    assert "inconclusive" in report and "unscorable items wrong 0.0 (below claim), right 100.0" in report
