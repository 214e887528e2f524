"""Dollar arithmetic and confidence intervals, checked against values worked out by hand."""

import math

import pytest

from harness.config import PricingConfig
from harness.endpoints.base import Usage
from harness.spend.pricing import request_cost_usd
from harness.common.stats import mean_estimate

V4_FLASH = PricingConfig(input_per_mtok=0.14, output_per_mtok=0.28)
WITH_CACHE_PRICE = PricingConfig(input_per_mtok=5.0, cached_input_per_mtok=0.5, output_per_mtok=30.0)


def test_uncached_request_costs_input_plus_output_at_list_price():
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)
    assert request_cost_usd(usage, V4_FLASH) == pytest.approx(0.14 + 0.14)


def test_cached_input_is_billed_at_its_own_price():
    # 10,000 prompt tokens of which 8,000 hit the cache; 2,000 output tokens (1,500 of them reasoning).
    usage = Usage(input_tokens=10_000, cached_input_tokens=8_000, output_tokens=2_000, reasoning_tokens=1_500)
    expected = (2_000 * 5.0 + 8_000 * 0.5 + 2_000 * 30.0) / 1e6  # reasoning is inside output_tokens
    assert request_cost_usd(usage, WITH_CACHE_PRICE) == pytest.approx(expected)
    assert expected == pytest.approx(0.074)


def test_cached_price_defaults_to_input_price_when_unknown():
    usage = Usage(input_tokens=1_000, cached_input_tokens=600, output_tokens=0)
    assert request_cost_usd(usage, V4_FLASH) == pytest.approx(1_000 * 0.14 / 1e6)


def test_cached_count_above_prompt_count_is_not_billed_twice():
    usage = Usage(input_tokens=100, cached_input_tokens=150)
    assert request_cost_usd(usage, WITH_CACHE_PRICE) == pytest.approx(100 * 0.5 / 1e6)


def test_usage_adds_field_by_field():
    total = Usage(1, 2, 3, 4) + Usage(10, 20, 30, 40)
    assert total == Usage(11, 22, 33, 44)


def test_wilson_interval_matches_textbook_value():
    # 8 of 10 correct: Wilson 95% interval is (0.4902, 0.9433) (Newcombe 1998, method 3).
    e = mean_estimate([1] * 8 + [0] * 2)
    assert e.value == pytest.approx(0.8)
    assert e.ci95 == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert e.stderr == pytest.approx(math.sqrt(0.8 * 0.2 * 10 / 9 / 10))


def test_all_wrong_still_has_a_nonzero_upper_bound():
    e = mean_estimate([0, 0, 0])
    assert e.value == 0 and e.ci95[0] == 0
    assert e.ci95[1] == pytest.approx(0.5615, abs=1e-4)


def test_non_binary_scores_use_normal_interval():
    e = mean_estimate([0.5, 1.0, 0.0, 0.5])
    sd = math.sqrt(sum((x - 0.5) ** 2 for x in [0.5, 1.0, 0.0, 0.5]) / 3)
    assert e.ci95 == pytest.approx((0.5 - 1.959964 * sd / 2, 0.5 + 1.959964 * sd / 2), abs=1e-5)


def test_single_sample_has_no_stderr():
    assert mean_estimate([1]).stderr is None
