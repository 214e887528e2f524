"""Pricing that matches bills (time-of-day windows, GPU time) and the budget guard's arithmetic,
checked against values worked out by hand."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from harness.spend.dry_run import History, estimate, read_history
from harness.spend.budget import (BudgetGuard, prompt_token_bound,
                            worst_case_cost)
from harness.config import PriceWindow, PricingConfig
from harness.endpoints.base import ChatRequest, Usage
from harness.spend.pricing import gpu_time_cost_usd, in_window, prices_at, request_cost_usd

# An off-peak window that wraps past midnight, at half the input and a quarter of the output price.
OFF_PEAK = PriceWindow(name="off-peak", start_utc="16:30", end_utc="00:30", input_per_mtok=0.07, output_per_mtok=0.07)
PRICED = PricingConfig(input_per_mtok=0.14, output_per_mtok=0.28, windows=[OFF_PEAK])
UTC = dt.timezone.utc


@pytest.mark.parametrize("hhmm, inside", [("16:29", False), ("16:30", True), ("23:59", True), ("00:00", True),
                                          ("00:29", True), ("00:30", False), ("12:00", False)])
def test_window_wraps_past_midnight(hhmm, inside):
    hour, minute = map(int, hhmm.split(":"))
    assert in_window(OFF_PEAK, dt.datetime(2026, 11, 24, hour, minute, tzinfo=UTC)) is inside


def test_request_billed_at_the_window_it_completed_in():
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    peak = request_cost_usd(usage, PRICED, at=dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    off = request_cost_usd(usage, PRICED, at=dt.datetime(2026, 11, 24, 17, 0, tzinfo=UTC))
    assert peak == pytest.approx(0.14 + 0.28)
    assert off == pytest.approx(0.07 + 0.07)
    # A time in another zone is converted: 02:00 at UTC+8 is 18:00 UTC, off-peak.
    beijing = dt.timezone(dt.timedelta(hours=8))
    assert request_cost_usd(usage, PRICED, at=dt.datetime(2026, 11, 25, 2, 0, tzinfo=beijing)) == pytest.approx(off)
    # A window price left null keeps the base price.
    partial = PricingConfig(input_per_mtok=1.0, output_per_mtok=2.0,
                            windows=[PriceWindow(start_utc="00:00", end_utc="23:59", output_per_mtok=1.0)])
    assert prices_at(partial, dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)).input_per_mtok == 1.0


def test_gpu_time_cost():
    pricing = PricingConfig(gpu_hour_usd=2.5, gpus=8)
    assert gpu_time_cost_usd(1800, pricing) == pytest.approx(2.5 * 8 * 0.5)
    # A response's share: 12 s of latency with 4 requests sharing the GPUs = 3 GPU-node seconds.
    assert request_cost_usd(Usage(input_tokens=10, output_tokens=10), pricing, gpu_seconds=12 / 4) == \
        pytest.approx(2.5 * 8 * 3 / 3600)
    assert gpu_time_cost_usd(3600, PricingConfig()) == 0.0


def _request(content: str, max_tokens: int = 100) -> ChatRequest:
    return ChatRequest(messages=({"role": "system", "content": "sys"}, {"role": "user", "content": content}),
                       model_id="m", params={"max_tokens": max_tokens})


def test_worst_case_is_an_upper_bound_from_bytes_and_max_tokens():
    request = _request("héllo")  # 6 bytes in UTF-8, plus "sys" = 3
    assert prompt_token_bound(request) == 9 + 8 * 2 + 16
    pricing = PricingConfig(input_per_mtok=1.0, output_per_mtok=10.0)
    assert worst_case_cost(request, pricing) == pytest.approx((41 * 1.0 + 100 * 10.0) / 1e6)


def test_budget_admits_while_worst_cases_fit_then_waits_for_settlement_then_refuses():
    async def scenario():
        guard = BudgetGuard(max_usd=1.0)
        assert await guard.reserve(0.6)
        # 0.6 reserved + 0.6 > 1.0: waits until the first settles at its real (lower) cost.
        waiting = asyncio.create_task(guard.reserve(0.6))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        await guard.settle(0.6, 0.1)
        assert await waiting  # 0.1 spent + 0.6 <= 1.0
        await guard.settle(0.6, 0.5)
        # 0.6 spent; a 0.5 worst case can never fit with nothing in flight: exhausted, and stays so.
        assert not await guard.reserve(0.5)
        assert guard.exhausted and not await guard.reserve(0.01)
        return guard.spent_usd

    assert asyncio.run(scenario()) == pytest.approx(0.6)


def test_dry_run_estimate_with_and_without_history(tmp_path):
    pricing = PricingConfig(input_per_mtok=1.0, output_per_mtok=2.0)
    requests = [(_request("x" * 397, max_tokens=50), False), (_request("y" * 97, max_tokens=50), False),
                (_request("cached", max_tokens=50), True)]
    blind = estimate(requests, pricing, None)
    assert (blind.requests, blind.cached, blind.prompt_bytes) == (3, 1, 400 + 100)
    assert blind.input_tokens == pytest.approx(500 / 4) and blind.output_tokens == 100
    assert blind.cost_usd == pytest.approx((100 + 25) * 1e-6 + 100 * 2e-6)
    informed = estimate(requests, pricing, History(runs=1, input_tokens_per_prompt_byte=0.5, output_tokens_per_request=7))
    assert informed.input_tokens == pytest.approx(250) and informed.output_tokens == pytest.approx(14)

    # History comes from earlier finished runs of the same model and task only.
    import json

    for name, model, task, usage in [("a", "m", "t", {"prompt_bytes": 1000, "input_tokens": 300, "output_tokens": 40,
                                                      "requests": 4}),
                                     ("b", "m", "t", {"prompt_bytes": 1000, "input_tokens": 100, "output_tokens": 0,
                                                      "requests": 4}),
                                     ("c", "other", "t", {"prompt_bytes": 5, "input_tokens": 5, "output_tokens": 5,
                                                          "requests": 1})]:
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"model": model, "task": task, "usage": usage}))
    history = read_history(tmp_path, "m", "t")
    assert history == History(runs=2, input_tokens_per_prompt_byte=400 / 2000, output_tokens_per_request=40 / 8)
    assert read_history(tmp_path, "m", "missing") is None
