"""Tokens to dollars at list price: uncached input, cached input and cache writes (each at its own
price) and output (which includes reasoning tokens, as providers bill them); time-of-day windows
(DeepSeek's off-peak rates); and, for self-hosted endpoints, GPU time."""

from __future__ import annotations

import dataclasses
import datetime as dt

from harness.config import PriceWindow, PricingConfig
from harness.common.exchange import Usage

_PER_TOKEN = 1e-6


def _seconds(clock: str) -> int:
    """"HH:MM" or "HH:MM:SS" -> seconds after midnight."""
    parts = [int(p) for p in clock.split(":")]
    return parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def in_window(window: PriceWindow, at: dt.datetime) -> bool:
    at = at.astimezone(dt.timezone.utc)
    if window.days and WEEKDAYS[at.weekday()] not in window.days:
        return False
    now, start, end = at.hour * 3600 + at.minute * 60 + at.second, _seconds(window.start_utc), _seconds(window.end_utc)
    return start <= now < end if start <= end else (now >= start or now < end)  # wraps past midnight


def window_at(pricing: PricingConfig, at: dt.datetime) -> PriceWindow | None:
    """The first of the pricing's time-of-day windows containing `at`, if any."""
    return next((window for window in pricing.windows if in_window(window, at)), None)


def prices_at(pricing: PricingConfig, at: dt.datetime | None) -> PricingConfig:
    """The prices in force at `at` (UTC): the first window containing it, else the base prices."""
    window = window_at(pricing, at) if at is not None else None
    if window is None:
        return pricing
    changes = {k: getattr(window, k) for k in ("input_per_mtok", "cached_input_per_mtok", "output_per_mtok")
               if getattr(window, k) is not None}
    return dataclasses.replace(pricing, **changes)


def gpu_time_cost_usd(seconds: float, pricing: PricingConfig) -> float:
    """GPU-hours at the configured rate (0 for endpoints billed per token)."""
    return (pricing.gpu_hour_usd or 0.0) * pricing.gpus * seconds / 3600.0


def request_cost_usd(usage: Usage, pricing: PricingConfig, at: dt.datetime | None = None,
                     gpu_seconds: float = 0.0) -> float:
    """One response's cost: its tokens at the prices in force at `at`, plus `gpu_seconds` of the GPUs
    (self-hosted: its latency divided by the requests sharing the GPUs)."""
    gpu = gpu_time_cost_usd(gpu_seconds, pricing)
    pricing = prices_at(pricing, at)
    # Cache reads and writes are parts of input_tokens; clamp so a malformed report never bills
    # more prompt tokens than were sent.
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_write_input_tokens, usage.input_tokens - cached)
    cached_price = pricing.input_per_mtok if pricing.cached_input_per_mtok is None else pricing.cached_input_per_mtok
    write_price = pricing.input_per_mtok if pricing.cache_write_per_mtok is None else pricing.cache_write_per_mtok
    return _PER_TOKEN * (
        (usage.input_tokens - cached - written) * pricing.input_per_mtok
        + cached * cached_price
        + written * write_price
        + usage.output_tokens * pricing.output_per_mtok
    ) + gpu
