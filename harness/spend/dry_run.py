"""The cheapest way to run a check, before spending: `dry_run=true` plans every request, estimates its
tokens from earlier runs of the same model and task, and prices the plan three ways from the price
book: now at the standard price, through the provider's batch API, and in the next off-peak window,
each with the shortest time it could take."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.common.exchange import ChatRequest, Usage
from harness.config import PricingConfig
from harness.spend.budget import (DEFAULT_BYTES_PER_TOKEN, max_output_tokens, prompt_bytes, prompt_token_bound,
                                  worst_case_cost)
from harness.spend.price_book import PriceSchedule, inline_schedule

BATCH_WINDOW_S = 24 * 3600.0  # OpenAI's and Anthropic's batch completion window


@dataclass(frozen=True)
class History:
    """What earlier runs of the same model and task used: the basis of the dry-run estimate."""

    runs: int
    input_tokens_per_prompt_byte: float
    output_tokens_per_request: float
    # Seconds one request held a slot (generation time x concurrency / requests); None if not recorded.
    slot_seconds_per_request: float | None = None


def read_history(results_dir: str | Path, model: str, task: str) -> History | None:
    """Token use (and, where recorded, time) of earlier finished runs of this model and task."""
    prompt_bytes_total = input_tokens = output_tokens = requests = runs = 0
    slot_seconds = timed_requests = 0.0
    for path in Path(results_dir, "runs").glob("*/summary.json"):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        usage = summary.get("usage") or {}
        if summary.get("model") != model or summary.get("task") != task or not usage.get("prompt_bytes"):
            continue
        runs += 1
        prompt_bytes_total += usage["prompt_bytes"]
        input_tokens += usage.get("input_tokens", 0)
        output_tokens += usage.get("output_tokens", 0)
        requests += usage.get("requests", 0)
        timing = summary.get("generation") or {}
        if timing.get("seconds") and timing.get("requests_sent"):
            slot_seconds += timing["seconds"] * timing.get("concurrency", 1)
            timed_requests += timing["requests_sent"]
    if not runs or not requests or not prompt_bytes_total:
        return None
    return History(runs, input_tokens / prompt_bytes_total, output_tokens / requests,
                   slot_seconds / timed_requests if timed_requests else None)


@dataclass
class WayToRun:
    """One way to send the plan: its cost, when it could start, and its shortest and longest wall time."""

    way: str            # standard | batch | off-peak
    cost_usd: float | None  # None: not offered (no batch API, no off-peak window)
    price: str = ""     # the book's period · window it is priced at
    starts_at: str = ""
    best_wall_s: float | None = None
    longest_wall_s: float | None = None
    note: str = ""


@dataclass
class DryRunEstimate:
    requests: int = 0
    cached: int = 0  # already in the response cache: free
    prompt_bytes: int = 0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cost_usd: float = 0.0  # standard price, now
    worst_case_usd: float = 0.0
    basis: str = ""
    ways: list[WayToRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DryRun(Exception):
    """Raised from inside lm-eval once every request is planned, to stop before anything is sent."""

    def __init__(self, estimate: DryRunEstimate):
        super().__init__("dry run")
        self.estimate = estimate


def estimate(planned: list[tuple[ChatRequest, bool]], prices: PriceSchedule | PricingConfig, history: History | None,
             concurrency: int = 1, now: dt.datetime | None = None, window: str = "off-peak",
             batch_refusal: str | None = None) -> DryRunEstimate:
    """Tokens and dollars for the requests not in the cache. With history: prompt tokens from the
    bytes-per-token of earlier runs, output tokens their mean per request; without: 4 bytes per prompt
    token and every request using its whole max_tokens (an upper bound on output)."""
    schedule = prices if isinstance(prices, PriceSchedule) else inline_schedule(prices)
    now = now or dt.datetime.now(dt.timezone.utc)
    result = DryRunEstimate()
    result.basis = (f"{history.runs} earlier run(s) of this model and task: {history.input_tokens_per_prompt_byte:.4f} "
                    f"prompt tokens per byte, {history.output_tokens_per_request:.1f} output tokens per request"
                    if history else
                    f"no earlier run of this model and task: {DEFAULT_BYTES_PER_TOKEN:g} bytes per prompt token, "
                    f"output = max_tokens (an upper bound)")
    usages: list[Usage] = []
    for request, cached in planned:
        result.requests += 1
        if cached:
            result.cached += 1
            continue
        size = prompt_bytes(request)
        input_tokens = size * history.input_tokens_per_prompt_byte if history else size / DEFAULT_BYTES_PER_TOKEN
        output_tokens = history.output_tokens_per_request if history else max_output_tokens(request)
        result.prompt_bytes += size
        result.input_tokens += input_tokens
        result.output_tokens += output_tokens
        usages.append(Usage(input_tokens=round(input_tokens), output_tokens=round(output_tokens)))
        result.worst_case_usd += worst_case_cost(request, schedule.worst_rates(prompt_token_bound(request), now))
    result.ways = ways_to_run(usages, schedule, history, concurrency, now, window, batch_refusal)
    result.cost_usd = result.ways[0].cost_usd or 0.0
    return result


def ways_to_run(usages: list[Usage], schedule: PriceSchedule, history: History | None, concurrency: int,
                now: dt.datetime, window: str, batch_refusal: str | None = None) -> list[WayToRun]:
    """Standard now, batch, and the next `window` (off-peak), priced per request from the book."""
    online_s = (math.ceil(len(usages) / max(1, concurrency)) * history.slot_seconds_per_request
                if history and history.slot_seconds_per_request is not None and usages else None)
    standard = [schedule.quote(u, now) for u in usages]
    ways = [WayToRun("standard", sum(q.cost_usd for q in standard), _labels(standard) or
                     schedule.period_at(now).id, now.isoformat(timespec="seconds"), online_s, online_s,
                     "" if online_s is not None else "no timed earlier run: wall time unknown")]
    period = schedule.period_at(now)
    if batch_refusal:
        ways.append(WayToRun("batch", None, note=batch_refusal))
    elif period.batch_discount is None:
        ways.append(WayToRun("batch", None, note=f"no batch API in the book for {schedule.model} ({period.id})"))
    else:
        batched = [schedule.quote(u, now, batch=True) for u in usages]
        ways.append(WayToRun("batch", sum(q.cost_usd for q in batched), _labels(batched) or period.id,
                             now.isoformat(timespec="seconds"), online_s, BATCH_WINDOW_S,
                             f"model.batch=true: {period.batch_discount:.0%} off; answers within the provider's 24 h "
                             f"window, at best as fast as online"))
    opening = schedule.next_window_start(window, now)
    if opening is None:
        ways.append(WayToRun(window, None, note=f"no '{window}' window in the book for {schedule.model}"))
    else:
        opens, closes, _ = opening
        waited = (opens - now).total_seconds()
        quoted = [schedule.quote(u, opens) for u in usages]
        fits = online_s is None or online_s <= (closes - opens).total_seconds()
        ways.append(WayToRun(window, sum(q.cost_usd for q in quoted), _labels(quoted) or window,
                             opens.isoformat(timespec="seconds"),
                             waited + online_s if online_s is not None else None, None,
                             (f"schedule.off_peak=true waits {waited / 3600:.1f} h for it" if waited > 0 else
                              "open now") + f" (closes {closes.strftime('%a %H:%M')} UTC)" + ("" if fits else "; the run outlasts the window: "
                                                                    "later responses are billed at the standard price")))
    return ways


def _labels(quotes: list[Any]) -> str:
    return ", ".join(sorted({q.label for q in quotes}))


def format_dry_run(summary: dict[str, Any], where: Path) -> str:
    e = summary["estimate"]
    lines = [f"[harness] dry run {summary['run_id']}: nothing was sent",
             f"  requests: {e['requests']} ({e['cached']} already cached, free)",
             f"  estimate: {e['input_tokens']:.0f} input + {e['output_tokens']:.0f} output tokens = ${e['cost_usd']:.4f} "
             f"(worst case ${e['worst_case_usd']:.4f})",
             f"  basis: {e['basis']}",
             "  ways to run it:"]
    for way in e.get("ways") or []:
        cost = f"${way['cost_usd']:.4f}" if way["cost_usd"] is not None else "not offered"
        best = f", at best {_duration(way['best_wall_s'])}" if way["best_wall_s"] is not None else ""
        lines.append(f"    {way['way']:<9} {cost:>12}  {way['price']}{best}" + (f" — {way['note']}" if way["note"] else ""))
    lines.append(f"  written: {where}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
