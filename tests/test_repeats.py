"""task.repeats=k on a task whose filter keeps one answer (GSM8K chat): k separate, seeded requests per item,
each scored by the task's own rule, an interval clustered by item, and a re-run that reads all k back."""
import json
import math

import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT, run_harness
from tests.fault_server import FaultServer
from harness.common.exchange import ChatRequest
from harness.common.stats import (clustered_mean_estimate, clustered_proportion_estimate, items_needed, items_needed_with_repeats, mean_estimate,
                                  within_item_share)
from harness.endpoints.cache import cache_key

GSM8K = pd.read_parquet(PROJECT_ROOT / "data/openai/gsm8k/main/test-00000-of-00001.parquet")
GOLD = {row.question: row.answer.split("####")[-1].strip().replace(",", "") for row in GSM8K.itertuples()}
ITEMS = 4
REPEATS = 3


def right(item: int, repeat: int) -> bool:
    """Item 0 always right, item 1 never, items 2 and 3 right on repeats 0 and 2 only."""
    return {0: True, 1: False}.get(item, repeat != 1)


def answer(payload) -> str:
    question = payload["messages"][-1]["content"]
    (item,) = [i for i, q in enumerate(GSM8K.question[:ITEMS]) if q in question]
    gold = GOLD[GSM8K.question[item]]
    number = gold if right(item, payload["seed"]) else str(int(gold) + 1)
    return f"Step by step... The final answer is {number}"


def _run(results, server):
    return run_harness("model=openai-compatible", f"model.base_url={server.base_url}", "model.model_id=m",
                       "task=gsm8k_chat", f"task.repeats={REPEATS}", f"limit={ITEMS}", "model.generation.temperature=0.7",
                       f"results_dir={results}", f"cache.path={results}/cache.sqlite", "tracking=none")


def test_every_repeat_is_sent_seeded_scored_and_read_back_from_the_cache(tmp_path):
    results = tmp_path / "results"
    server = FaultServer(content_fn=answer).__enter__()
    try:
        done = _run(results, server)
        bodies = server.bodies()
        # The same command again: all 12 answers come back from the cache, none collapsed into another.
        again = _run(results, server)
        assert server.completed == ITEMS * REPEATS
    finally:
        server.__exit__(None, None, None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(bodies) == ITEMS * REPEATS
    seeds = sorted(b["seed"] for b in bodies)
    assert seeds == sorted(list(range(REPEATS)) * ITEMS)  # seed (none set: 0) + repeat, per item
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    task = summary["tasks"]["gsm8k_chat"]
    values = [float(right(i, r)) for i in range(ITEMS) for r in range(REPEATS)]
    items = [i for i in range(ITEMS) for _ in range(REPEATS)]
    assert task["value"] == pytest.approx(sum(values) / len(values))  # 7 of 12 right
    assert task["n"] == ITEMS and task["n_samples"] == ITEMS * REPEATS and task["repeats"] == REPEATS
    # Clustered by item: Wilson at the effective number of answers, wider than 12 independent answers.
    assert task["ci95"] == pytest.approx(list(clustered_proportion_estimate(values, items).ci95))
    naive = mean_estimate(values)
    assert task["ci95"][1] - task["ci95"][0] > naive.ci95[1] - naive.ci95[0]
    assert task["within_item_share"] == pytest.approx(within_item_share(values, items))
    rows = [json.loads(line) for line in next(results.glob("runs/*/samples.jsonl")).read_text().splitlines()]
    assert sorted((r["doc_id"], r["repeat"]) for r in rows) == [(i, r) for i in range(ITEMS) for r in range(REPEATS)]
    assert {(r["doc_id"], r["repeat"]): r["score"] for r in rows} == {
        (i, r): float(right(i, r)) for i in range(ITEMS) for r in range(REPEATS)}

    assert again.returncode == 0, again.stderr[-3000:]
    latest = max(results.glob("runs/*/summary.json"), key=lambda p: p.stat().st_mtime)
    repeat_task = json.loads(latest.read_text())["tasks"]["gsm8k_chat"]
    assert repeat_task["value"] == pytest.approx(task["value"]) and repeat_task["n_samples"] == ITEMS * REPEATS


def test_a_repeat_has_its_own_cache_key_and_a_single_answer_keeps_the_old_one():
    request = ChatRequest(messages=({"role": "user", "content": "q"},), model_id="m", params={"temperature": 0.7})
    legacy = cache_key("e", request)
    assert cache_key("e", ChatRequest(request.messages, "m", {"temperature": 0.7}, sample=0)) == legacy
    assert cache_key("e", ChatRequest(request.messages, "m", {"temperature": 0.7}, sample=1)) != legacy


def test_within_item_share_by_hand():
    # Items [1,1], [0,0], [1,0]: means 1, 0, .5; grand mean .5. Within: SS = .5 over N - G = 3 -> msw = 1/6.
    # Between: 2 * (.25 + .25 + 0) / 2 = .5; n0 = (6 - 12/6) / 2 = 2; sb2 = (.5 - 1/6) / 2 = 1/6. Share = 1/2.
    assert within_item_share([1, 1, 0, 0, 1, 0], [1, 1, 2, 2, 3, 3]) == pytest.approx(0.5)
    assert within_item_share([1, 0, 1, 0], ["a", "a", "b", "b"]) == pytest.approx(1.0)  # items alike, draws differ
    assert within_item_share([1, 1, 0, 0], ["a", "a", "b", "b"]) == pytest.approx(0.0)  # draws agree
    assert within_item_share([1, 0], ["a", "b"]) is None  # no item has two answers


def test_repeats_buy_only_the_within_item_part_of_the_variance():
    single = items_needed(0.875, 0.05)
    # Share 0.5 and 4 repeats: each item weighs 1 / (0.5 + 0.5 / 4) = 1.6 answers.
    assert items_needed_with_repeats(0.875, 0.05, 4, 0.5) == math.ceil(single * 0.625)
    assert items_needed_with_repeats(0.875, 0.05, 4, 0.0) == single  # draws agree: repeats add nothing
    assert items_needed_with_repeats(0.875, 0.05, 10**6, 0.3) == math.ceil(single * 0.7 + single * 0.3 / 10**6)


def test_a_verdict_on_repeats_weighs_items_not_answers_and_plans_items_x_repeats():
    from harness.claims.registry import Claim, Protocol, Source
    from harness.claims.verdicts import judge
    from harness.config import ModelConfig, RunConfig, TaskConfig

    cfg = RunConfig(model=ModelConfig(name="m", model_id="m"),
                    task=TaskConfig(name="gsm8k_chat", lm_eval_task="gsm8k_chat", benchmark="GSM8K", repeats=4))
    claim = Claim(id="c", kind="score", model_as_named="M", benchmark="GSM8K", value=90.0, unit="percent",
                  source=Source("s", "2026-01"), model="m", task="gsm8k_chat", protocol=Protocol(n_samples=4))

    def verdict(share):
        task = {"value": 0.85, "ci95": [0.80, 0.90], "n": 400, "n_samples": 1600, "repeats": 4,
                "within_item_share": share, "cost_usd": 1.0}
        [v] = judge([claim], cfg, {"tasks": {"gsm8k_chat": task}, "dataset": {}, "cost_usd": 1.0})
        return v

    agree, disagree = verdict(0.0), verdict(0.8)
    assert agree.mismatches == ()  # the claim's 4 samples per item match task.repeats=4
    # Draws that always agree make 4 repeats worth 1 answer: 400 items detect what 400 single answers do.
    assert agree.detectable_shortfall_points == pytest.approx(verdict(None).detectable_shortfall_points)
    # Mostly within-item variance: 400 x 4 weigh as 400 / (0.2 + 0.8 / 4) = 1000 answers.
    assert disagree.detectable_shortfall_points < agree.detectable_shortfall_points
    from harness.claims.verdicts import POWER_SHORTFALL as d
    assert (f"{items_needed(0.9, d)} items at 1 answer each or {items_needed_with_repeats(0.9, d, 4, 0.8)} items x 4 "
            f"repeats") in disagree.detail
    assert "on 400 items x 4 repeats" in disagree.detail


def test_lm_evals_own_task_scores_every_repeat_through_each_of_its_filters(tmp_path):
    """lm-eval's gsm8k: regex filters ending in take_first; each repeat goes through both pipelines."""
    results = tmp_path / "results"
    with FaultServer(content_fn=lambda p: answer(p).replace("The final answer is ", "#### ")) as server:
        done = run_harness("model=openai-compatible", f"model.base_url={server.base_url}", "model.model_id=m",
                           "task=gsm8k", f"task.repeats={REPEATS}", f"limit={ITEMS}", f"results_dir={results}",
                           "tracking=none", f"cache.path={results}/cache.sqlite")
    assert done.returncode == 0, done.stderr[-3000:]
    task = json.loads(next(results.glob("runs/*/summary.json")).read_text())["tasks"]["gsm8k"]
    expected = sum(right(i, r) for i in range(ITEMS) for r in range(REPEATS)) / (ITEMS * REPEATS)
    assert task["by_filter"] == pytest.approx({"strict-match": expected, "flexible-extract": expected})
    assert task["n"] == ITEMS and task["n_samples"] == ITEMS * REPEATS


def test_repeats_that_agree_never_narrow_the_interval_below_one_answer_per_item():
    """All answers wrong on 2 items x 5 repeats: the cluster-robust SE is 0, yet the interval is that of
    2 answers (not the point [0, 0]); 29 of 30 items right with 3 identical repeats: that of 30 answers."""
    all_wrong = clustered_proportion_estimate([0.0] * 10, [0] * 5 + [1] * 5)
    assert all_wrong.ci95 == pytest.approx(mean_estimate([0, 0]).ci95) and all_wrong.ci95[1] > 0.6
    agree = [1.0] * (29 * 3) + [0.0] * 3
    items = [i for i in range(30) for _ in range(3)]
    assert clustered_proportion_estimate(agree, items).ci95 == pytest.approx(mean_estimate([1] * 29 + [0]).ci95)
    # Repeats that disagree within items carry more: narrower than one answer per item, never narrower
    # than every answer independent.
    mixed = [float((i + r) % 2) for i in range(40) for r in range(4)]
    clusters = [i for i in range(40) for _ in range(4)]
    e = clustered_proportion_estimate(mixed, clusters)
    width = e.ci95[1] - e.ci95[0]
    per_item = mean_estimate([1] * 20 + [0] * 20).ci95
    independent = mean_estimate(mixed).ci95
    assert independent[1] - independent[0] - 1e-9 <= width <= per_item[1] - per_item[0]
