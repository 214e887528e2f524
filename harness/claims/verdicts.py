"""A verdict for every claim a run can speak to, with each protocol difference named.

Scores: the claim (a percentage) is tested against the run's 95% interval for the same benchmark and
model. `below claim` / `above claim` when the interval excludes it (refuted at that level);
`consistent` when it includes it and the interval is narrow enough to have caught a real gap
(half-width <= max_ci_halfwidth, 10 points by default); otherwise `underpowered`. Prices: the claim
against the price book on the claim's date (harness.spend.price_claims). Speeds: the p50 of the run's streamed responses (time to first
token, output tokens/s) against the claim, consistent within SPEED_TOLERANCE, with the conditions no
claim states named; `not measured` when the run did not stream.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from harness.claims.registry import UNKNOWN, Claim
from harness.config import RunConfig
from harness.common.stats import (Estimate, detectable_shortfall, items_needed, items_needed_with_repeats,
                                  mean_estimate, repeats_design_effect)
from harness.common.contamination import contamination_reason
from harness.common.headline import headline_task
from harness.common.price_match import ABOVE, BELOW, CONSISTENT, NOT_MEASURED, PriceMatch

UNDERPOWERED, INCONCLUSIVE = "underpowered", "inconclusive"  # with CONSISTENT, BELOW, ABOVE, NOT_MEASURED
# Reasoning levels, least to most ("on": thinking on, level not stated).
REASONING_ORDER = ("off", "none", "minimal", "low", "medium", "on", "high", "xhigh", "max")
# The within-item share of the variance is used for planning only when measured on this many items.
MIN_ITEMS_FOR_SHARE = 20
POWER_SHORTFALL = 0.02  # "to detect a 2-point shortfall you need N items"


@dataclass(frozen=True)
class Verdict:
    claim_id: str
    kind: str
    model_as_named: str
    benchmark: str
    source: str
    status: str
    claimed: float  # as the claim states it (percent, USD per 1M tokens, ms, tokens/s)
    measured: float | None  # same unit
    ci95: tuple[float, float] | None  # same unit
    n: int | None
    task: str | None  # the run's task the measurement comes from
    mismatches: tuple[str, ...]  # protocol differences, one by one; never hidden by the status
    unknowns: tuple[str, ...]  # protocol fields the claim does not state
    cost_usd: float | None  # what the check cost (the run's list-price cost for this task)
    detail: str
    # Power planning for score claims: the smallest shortfall (points) this run's n detects with 80%
    # power at the 5% level, and the items needed to detect a shortfall of POWER_SHORTFALL points.
    detectable_shortfall_points: float | None = None
    items_for_shortfall: int | None = None
    # Score claims: the score (percent) and verdict with every unscorable item (truncated, answer not
    # extracted, request failed) counted wrong (strict) and counted right (generous).
    strict_value: float | None = None
    generous_value: float | None = None
    strict_status: str | None = None
    generous_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95) if self.ci95 else None
        d["mismatches"], d["unknowns"] = list(self.mismatches), list(self.unknowns)
        return d


def score_status(claimed_fraction: float, value: float, ci95: tuple[float, float],
                 max_ci_halfwidth: float = 0.10) -> str:
    lo, hi = ci95
    if claimed_fraction < lo:
        return ABOVE
    if claimed_fraction > hi:
        return BELOW
    return CONSISTENT if (hi - lo) / 2 <= max_ci_halfwidth else UNDERPOWERED


@dataclass(frozen=True)
class Gate:
    """Whether the run can speak to a score claim, and the verdict's range over its unscorable items."""

    reasons: tuple[str, ...]
    strict_value: float
    generous_value: float
    strict_status: str
    generous_status: str


def gate(claimed_fraction: float, headline: dict[str, Any], cfg: RunConfig, claim: Claim,
         max_ci_halfwidth: float, max_unscorable_fraction: float | None,
         contamination: dict[str, Any] | None = None) -> Gate:
    """Unscorable items are truncated answers, answers no rule could extract (both scored 0 in `value`)
    and failed requests (not in `n`). Strict counts them all wrong, generous all right; when the two
    verdicts differ, they are what decides it and the verdict is `inconclusive` — the default threshold:
    exactly enough of them to change the verdict. `claims.max_unscorable_fraction` adds a fixed ceiling."""
    n, errors = int(headline.get("n_samples") or headline["n"]), int(headline.get("n_errors") or 0)
    unscorable = min(n, int(headline.get("n_truncated") or 0) + int(headline.get("n_extraction_failed") or 0))
    total = n + errors
    # Failed items weigh as all their repeats (scoring's unscorable_fraction); older summaries: by count.
    fraction = headline.get("unscorable_fraction")
    fraction = fraction if fraction is not None else ((unscorable + errors) / total if total else 0.0)
    ranged = headline.get("unscorable_range") or {}
    if "strict" in ranged and "generous" in ranged:  # computed by scoring from the answers themselves
        strict, generous = (Estimate(ranged[k]["value"], None, tuple(ranged[k]["ci95"]), n) for k in ("strict", "generous"))
    else:  # a summary from before: rebuilt from its counts (one 0/1 answer per item)
        correct = round(headline["value"] * n)
        unscorable = min(n - correct, unscorable)
        strict = mean_estimate([1] * correct + [0] * (total - correct))
        generous = mean_estimate([1] * (correct + unscorable + errors) + [0] * (total - correct - unscorable - errors))
    strict_status = score_status(claimed_fraction, strict.value, strict.ci95, max_ci_halfwidth)
    generous_status = score_status(claimed_fraction, generous.value, generous.ci95, max_ci_halfwidth)
    reasons = []
    counted = (f"{headline.get('n_truncated') or 0} truncated, {headline.get('n_extraction_failed') or 0} without an "
               f"extracted answer, {errors} failed request(s)")
    if (unscorable or errors) and strict_status != generous_status:
        reasons.append(f"{counted}: counted wrong the verdict is '{strict_status}', counted right '{generous_status}' "
                       f"(raise max_tokens, fix the failures, re-run)")
    elif max_unscorable_fraction is not None and fraction > max_unscorable_fraction:
        reasons.append(f"{counted}: {fraction:.0%} of the answers, over "
                       f"claims.max_unscorable_fraction={max_unscorable_fraction:g}")
    blocking = reasoning_shortfall(str(claim.protocol.reasoning).lower(), cfg)
    if blocking:
        reasons.append(f"blocking protocol mismatch: {blocking}")
    contaminated = contamination_reason(contamination)  # the run's window vs the model's published dates
    if contaminated:
        reasons.append(contaminated)
    return Gate(tuple(reasons), strict.value, generous.value, strict_status, generous_status)


def _effective_reasoning(cfg: RunConfig) -> str | None:
    """The run's reasoning level as sent: "off" when thinking is off (model.thinking=false, or a native
    Anthropic model with no thinking asked for: no field means none), else the effort it set, "on" for
    thinking on at the provider's default effort, None when nothing was set."""
    model = cfg.model
    effort = (model.generation.reasoning_effort or "").lower() or None
    if model.thinking is False or effort in ("none", "off"):
        return "off"
    if (model.provider == "anthropic" and model.thinking is None and model.generation.thinking_budget_tokens is None
            and not (isinstance(model.generation.extra_body, dict) and model.generation.extra_body.get("thinking"))):
        return "off"
    return effort or ("on" if model.thinking else None)


def reasoning_shortfall(claimed: str, cfg: RunConfig) -> str | None:
    """Why the run reasoned less than the claim says, when it certainly did: thinking off against any
    reasoning claim, a lower effort than the claim's, or the provider's default effort against a claim
    at xhigh / max (the providers' defaults are lower). None when the run can speak to the claim."""
    if claimed not in REASONING_ORDER or claimed in ("off", "none"):
        return None
    run = _effective_reasoning(cfg)
    if run == "off":
        return f"the claim is at '{claimed}' reasoning, the run had thinking off"
    if (run in REASONING_ORDER and run != "on" and claimed != "on"
            and REASONING_ORDER.index(run) < REASONING_ORDER.index(claimed)):
        return f"the claim is at '{claimed}' reasoning, the run at '{run}'"
    if run in (None, "on") and claimed in ("xhigh", "max"):
        return (f"the claim is at '{claimed}' reasoning, the run at the provider's default effort (set "
                f"model.generation.reasoning_effort={claimed})")
    return None


def _reasoning_of_run(cfg: RunConfig) -> str:
    """The run's reasoning level in words, for the mismatch list."""
    run = _effective_reasoning(cfg)
    return {None: "provider default (not set)", "on": "on (provider default effort)"}.get(run, run)


def protocol_mismatches(claim: Claim, cfg: RunConfig, n: int, n_docs: int | None) -> tuple[list[str], list[str]]:
    """(differences between the claim's stated protocol and the run's, fields the claim leaves unknown)."""
    mismatches: list[str] = []
    unknowns = [name for name, value in asdict(claim.protocol).items() if value == UNKNOWN]
    p = claim.protocol
    if claim.task and claim.task != cfg.task.name:
        mismatches.append(f"task: the claim is checked by {claim.task}, the run used {cfg.task.name}")
    if p.reasoning != UNKNOWN:
        run_reasoning = _reasoning_of_run(cfg)
        if str(p.reasoning).lower() != run_reasoning.lower():
            mismatches.append(f"reasoning: the claim is at '{p.reasoning}', the run at '{run_reasoning}'")
    if p.subset == "full" and n_docs is not None and n < n_docs:
        mismatches.append(f"subset: the claim is on the full set ({n_docs:,} items), the run on {n:,} items")
    if p.shots != UNKNOWN and cfg.task.num_fewshot is not None and int(p.shots) != cfg.task.num_fewshot:
        mismatches.append(f"shots: the claim is {p.shots}-shot, the run {cfg.task.num_fewshot}-shot")
    run_temperature = cfg.model.generation.temperature
    if p.temperature != UNKNOWN and run_temperature is not None and float(p.temperature) != run_temperature:
        mismatches.append(f"temperature: the claim at {p.temperature}, the run at {run_temperature}")
    run_samples = cfg.task.repeats or 1
    if p.n_samples != UNKNOWN and int(p.n_samples) != run_samples:
        mismatches.append(f"samples: the claim averages {p.n_samples} samples per item, the run {run_samples} "
                          f"(task.repeats={p.n_samples} matches it)")
    return mismatches, unknowns


def claims_for_run(claims: list[Claim], cfg: RunConfig) -> list[Claim]:
    """The claims about this run's model: scores on its benchmark, and its prices and speeds."""
    chosen = []
    for claim in claims:
        if claim.model != cfg.model.name or not claim.measured_by_runs:  # model facts, ratings: no run measures them
            continue
        if claim.kind == "score" and claim.benchmark.lower() != (cfg.task.benchmark or "").lower():
            continue
        chosen.append(claim)
    return chosen


def judge(claims: list[Claim], cfg: RunConfig, summary: dict[str, Any], max_ci_halfwidth: float = 0.10,
          price_matches: dict[str, PriceMatch] | None = None,
          max_unscorable_fraction: float | None = None) -> list[Verdict]:
    """`price_matches`: the price book's word on each price claim, on the claim's date (harness.spend.price_claims)."""
    verdicts = []
    task = headline_task(summary)
    headline = summary["tasks"][task] if task is not None else None
    n_docs = sum(d.get("n_docs", 0) for d in summary.get("dataset", {}).values()) or None
    for claim in claims_for_run(claims, cfg):
        common = dict(claim_id=claim.id, kind=claim.kind, model_as_named=claim.model_as_named,
                      benchmark=claim.benchmark, source=f"{claim.source.publication}, {claim.source.date}",
                      claimed=claim.value)
        if claim.kind == "score" and headline is not None:
            mismatches, unknowns = protocol_mismatches(claim, cfg, headline["n"], n_docs)
            unpinned = [name for name, d in (summary.get("dataset") or {}).items() if d.get("pinned") is False]
            if unpinned:  # a copy of one's own (task.dataset_sha256=null): not the benchmark the claim is on
                mismatches.append(f"data: not verified against the pinned hashes ({', '.join(unpinned)}): a copy "
                                  f"of your own, not necessarily the benchmark the claim is about")
            lo, hi = headline["ci95"]
            status = score_status(claim.value / 100, headline["value"], (lo, hi), max_ci_halfwidth)
            gated = gate(claim.value / 100, headline, cfg, claim, max_ci_halfwidth, max_unscorable_fraction,
                         summary.get("contamination"))
            if gated.reasons:
                status = INCONCLUSIVE
            repeats, share = int(headline.get("repeats") or 1), headline.get("within_item_share")
            if headline["n"] < MIN_ITEMS_FOR_SHARE:  # a share measured on a handful of items says little
                share = None
            # m items x k repeats weigh as m / design_effect single answers (harness.common.stats).
            effective_n = max(1, round(headline["n"] / repeats_design_effect(share, repeats)))
            detectable = detectable_shortfall(claim.value / 100, effective_n)
            needed = items_needed(claim.value / 100, POWER_SHORTFALL) if claim.value / 100 > POWER_SHORTFALL else None
            verdicts.append(Verdict(
                **common, status=status, measured=100 * headline["value"], ci95=(100 * lo, 100 * hi),
                n=headline["n"], task=cfg.task.name, mismatches=tuple(mismatches), unknowns=tuple(unknowns),
                cost_usd=headline["cost_usd"],
                detectable_shortfall_points=None if math.isnan(detectable) else 100 * detectable,
                items_for_shortfall=needed,
                strict_value=100 * gated.strict_value, generous_value=100 * gated.generous_value,
                strict_status=gated.strict_status, generous_status=gated.generous_status,
                detail=("inconclusive: " + "; ".join(gated.reasons) + ". " if gated.reasons else "")
                + f"{100 * headline['value']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] on {headline['n']} items"
                + (f" x {repeats} repeats" if repeats > 1 else "")
                + f" vs claimed {claim.value}; these detect a shortfall of "
                  f"{'—' if math.isnan(detectable) else f'{100 * detectable:.1f}'} points (80% power, 5% level); "
                  f"a {100 * POWER_SHORTFALL:.0f}-point shortfall needs {power_plan(claim.value / 100, needed, repeats, share)}"))
        elif claim.kind == "price":
            billed = ", ".join(u["price"] for u in summary.get("prices_used") or []) or "nothing bought"
            verdicts.append(price_verdict(claim, (price_matches or {}).get(claim.id), cfg.task.name,
                                          summary["cost_usd"], f"this run was billed at: {billed}"))
        elif claim.kind == "speed":
            verdicts.append(speed_verdict(claim, common, summary.get("speed"), cfg.task.name))
    return verdicts


def power_plan(claimed: float, needed: int | None, repeats: int, share: float | None) -> str:
    """The items a POWER_SHORTFALL verdict needs: at one answer each, and with this run's repeats (from the
    within-item share of the variance; none taken when it was not measured) down to the floor repeats reach."""
    if needed is None or repeats == 1:
        return f"{needed} items"
    measured = f"not measured on {MIN_ITEMS_FOR_SHARE}+ items, taken as 0" if share is None else f"{share:.2f}"
    return (f"{needed} items at 1 answer each or {items_needed_with_repeats(claimed, POWER_SHORTFALL, repeats, share)} "
            f"items x {repeats} repeats (within-item share of the variance {measured}; repeats cannot go below "
            f"{items_needed_with_repeats(claimed, POWER_SHORTFALL, math.inf, share)} items)")


def price_verdict(claim: Claim, match: PriceMatch | None, task: str | None = None, cost_usd: float | None = None,
                  note: str = "") -> Verdict:
    """A price claim against the price book on the claim's date (a run adds what it was billed at)."""
    return Verdict(claim_id=claim.id, kind=claim.kind, model_as_named=claim.model_as_named, benchmark=claim.benchmark,
                   source=f"{claim.source.publication}, {claim.source.date}", claimed=claim.value,
                   status=match.status if match else NOT_MEASURED, measured=match.book_value if match else None,
                   ci95=None, n=None, task=task, mismatches=(), unknowns=(), cost_usd=cost_usd,
                   detail=(match.detail if match else "no price book entry to judge it by") + (f"; {note}" if note else ""))


# A speed is one number measured under conditions no article states (prompt and output length, load,
# time of day, where the client is): within this fraction of the claim counts as consistent.
SPEED_TOLERANCE = 0.25
_SPEED_MEASURES = {"time_to_first_token": ("ttft_ms", "ms", False), "output_tokens_per_s": ("output_tokens_per_s", "tokens_per_s", True)}


def speed_verdict(claim: Claim, common: dict[str, Any], speed: dict[str, Any] | None, task: str) -> Verdict:
    """The run's streamed p50 against a claimed time to first token or output rate."""
    key, unit, higher_is_better = _SPEED_MEASURES.get(claim.metric, (None, None, True))
    measured = (speed or {}).get(key) if key else None
    if measured is None:
        why = ("this run did not stream (set model.stream=true)" if speed is None
               else f"no {claim.metric} measure in the streamed responses")
        return Verdict(**common, status=NOT_MEASURED, measured=None, ci95=None, n=None, task=task, mismatches=(),
                       unknowns=(), cost_usd=None, detail=f"speed claim {claim.metric}: {why}")
    p50, p90 = measured["p50"], measured["p90"]
    ratio = p50 / claim.value if claim.value else float("inf")
    if abs(ratio - 1) <= SPEED_TOLERANCE:
        status = CONSISTENT
    else:
        better = ratio > 1 if higher_is_better else ratio < 1
        status = ABOVE if better else BELOW
    lengths = speed.get("output_tokens") or {}
    mismatches = (f"prompt and output length: the claim states none; measured at p50 {speed['input_tokens']['p50']:.0f} "
                  f"prompt and {lengths.get('p50', 0):.0f} output tokens",
                  "time of day, load and client location: unknown for the claim; this run's are its own")
    # No interval: p50/p90 are not one, and the report's "measured [95% CI]" column must not say so.
    return Verdict(**common, status=status, measured=p50, ci95=None, n=speed["n_streamed"],
                   task=task, mismatches=mismatches, unknowns=(), cost_usd=None,
                   detail=f"p50 {p50:.0f} {unit} (p90 {p90:.0f}) over {speed['n_streamed']} streamed responses vs claimed "
                          f"{claim.value} {unit}; within {SPEED_TOLERANCE:.0%} counts as consistent")
