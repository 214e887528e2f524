"""The claims registry: published numbers with the protocol and source they were stated with.

Claims live in conf/claims/*.yaml, each file a list under `claims:`. One claim is one number, of a kind:

- `score`: unit `percent` (metric accuracy, in [0, 100]) or `rating` (metric rating: a Codeforces
  Elo-like number). A rating is never judged as a percentage, and no task yields one, so a rating with
  a task is refused.
- `price`: `usd_per_mtok` (USD per 1M tokens); `speed`: `ms` to first token or `tokens_per_s`.
- `fact`: what a source states about a model that no run measures — size, context, training, dates,
  ratios to a predecessor. `benchmark: fact`; `metric` names the quantity and fixes its unit (FACTS).
  Values are plain numbers in that unit: 1.6T parameters is 1600000000000, $5.6M is 5600000, a 1M-token
  context 1000000; dates are ISO strings ("2026-04-24", or "2026-04" when the day is not stated); a
  ratio metric is the percent of `relative_to` (27% of V3.2's FLOPs is 27, "doubling" 200, "1.2x" 120).

`bound` says how the source qualifies the number: "=" (default), "~" (roughly), "<" / ">" (less / more
than), "<=" / ">=" (the ends of a stated range, one claim each); scores, prices and speeds take only "="
or "~", since a verdict compares one value. Whatever the source does not say is written `unknown`,
never guessed. No run judges a fact ("model fact (no task)") or a score with `task: null` ("no task").
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config import ConfigError

# libyaml's safe loader when PyYAML has it (the same documents, ~10x faster: the registry is read on
# every run, after its last response); the pure-Python one otherwise.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CLAIMS_DIR = Path(__file__).resolve().parents[2] / "conf" / "claims"
UNKNOWN = "unknown"
NO_TASK, MODEL_FACT = "no task", "model fact (no task)"  # why no run judges a claim


@dataclass(frozen=True)
class FactMetric:
    unit: str
    low: float = 0.0  # smallest plausible value: catches 1.6 written for 1.6T parameters
    high: float | None = None
    relative: bool = False  # a ratio or lag: `relative_to` names what it is relative to


_RATIO = FactMetric("percent", 0.0, None, True)
FACTS = {
    "total_parameters": FactMetric("parameters", 1e6), "active_parameters": FactMetric("parameters", 1e6),
    "context_length": FactMetric("tokens", 1e3), "training_tokens": FactMetric("tokens", 1e9),
    "multi_token_prediction_depth": FactMetric("tokens", 1),
    "training_cost": FactMetric("usd", 1e4), "research_compute_cost": FactMetric("usd", 1e4),
    "total_compute_cost": FactMetric("usd", 1e4), "request_cost": FactMetric("usd"),
    "training_gpus": FactMetric("gpus", 1), "training_days": FactMetric("days", 1),
    "training_compute": FactMetric("flops", 1e18), "rl_tasks": FactMetric("count", 1),
    "weights_size": FactMetric("gigabytes", 1),
    "communication_share_of_step_time": FactMetric("percent", 0, 100), "promotion_discount": FactMetric("percent", 0, 100),
    "release_date": FactMetric("date"), "retirement_date": FactMetric("date"), "promotion_end_date": FactMetric("date"),
    "inference_flops_ratio": _RATIO, "kv_cache_ratio": _RATIO, "training_efficiency_ratio": _RATIO,
    "fp8_throughput_ratio": _RATIO, "training_cost_ratio": _RATIO, "cost_ratio": _RATIO,
    "capability_lag": FactMetric("months", 0, None, True),
    "benchmarks_more_cost_efficient": FactMetric("count", 0, None, True),
}
KINDS = {"score": {"percent", "rating"}, "price": {"usd_per_mtok"}, "speed": {"ms", "tokens_per_s"},
         "fact": {m.unit for m in FACTS.values()}}
# What a score, price or speed claim is about; a score's metric follows its unit.
QUANTITIES = {"score": {"accuracy", "rating"}, "price": {"input", "cached_input", "output"},
              "speed": {"time_to_first_token", "output_tokens_per_s"}, "fact": set(FACTS)}
SCORE_METRIC = {"percent": "accuracy", "rating": "rating"}
BOUNDS = {"=", "~", "<", ">", "<=", ">="}
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


@dataclass(frozen=True)
class Protocol:
    """The protocol as the source states it; `unknown` where it does not say."""

    shots: int | str = UNKNOWN
    chain_of_thought: bool | str = UNKNOWN
    reasoning: str = UNKNOWN  # e.g. "max", "high", "xhigh", "off"
    temperature: float | str = UNKNOWN
    subset: str = UNKNOWN  # "full", "<N> items", a date window, ...
    n_samples: int | str = UNKNOWN  # samples per item (pass@1 over n)


@dataclass(frozen=True)
class Source:
    publication: str
    date: str
    provenance: str = UNKNOWN  # what the source says about where the number came from
    url: str = UNKNOWN


@dataclass(frozen=True)
class Claim:
    id: str
    kind: str  # score | price | speed | fact
    model_as_named: str
    benchmark: str  # a score's benchmark; "price", "speed" or "fact" for the others
    value: float | str  # a str only for unit `date`
    unit: str
    source: Source
    model: str | None = None  # our model config name, when one matches
    # A price claim whose model is ambiguous ("DeepSeek V4"): the price-book entries it may be about.
    price_books: tuple[str, ...] = ()
    task: str | None = None  # our task config name; None = no task can check it yet
    metric: str = "accuracy"  # scores: accuracy | rating; the others: QUANTITIES
    protocol: Protocol = field(default_factory=Protocol)
    bound: str = "="  # see the module docstring
    relative_to: str | None = None  # a relative fact's reference ("DeepSeek-V3.2")
    notes: str = ""
    file: str = ""

    @property
    def checkable(self) -> bool:
        """A run can judge it: a price or speed (any run of the model), a score with a task."""
        return self.kind in ("price", "speed") or (self.kind == "score" and self.task is not None)

    @property
    def measured_by_runs(self) -> bool:
        """What a run measures: percent scores, prices, speeds; never a fact or a rating."""
        return self.kind in ("price", "speed") or (self.kind == "score" and self.unit == "percent")

    @property
    def no_run_status(self) -> str | None:
        """Why no run judges it (MODEL_FACT, NO_TASK), or None when one can."""
        if self.kind == "fact":
            return MODEL_FACT
        return None if self.checkable else NO_TASK


def _value(raw: dict[str, Any], where: str) -> None:
    """Dates as ISO strings (YAML reads 2026-04-24 as a date), every other value a number."""
    value = raw.get("value")
    if raw.get("unit") == "date":
        text = value.isoformat() if isinstance(value, dt.date) else str(value)
        if not _DATE.match(text):
            raise ConfigError(f"{where}: a date is written YYYY-MM-DD, YYYY-MM or YYYY, got {value!r}")
        raw["value"] = text
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: value must be a plain number in the claim's unit ({raw.get('unit')}), "
                          f"got {value!r}: write 1.6T as 1600000000000, $5.6M as 5600000")


def _check_fact(claim: Claim, where: str) -> None:
    spec = FACTS.get(claim.metric)
    if spec is None:
        raise ConfigError(f"{where}: a fact's metric is one of {sorted(FACTS)}, got {claim.metric!r}")
    if claim.unit != spec.unit:
        raise ConfigError(f"{where}: a {claim.metric} fact's unit is {spec.unit}, got {claim.unit!r}")
    if claim.benchmark != "fact" or claim.task is not None:
        raise ConfigError(f"{where}: a fact has benchmark: fact and task: null (no run measures it)")
    if spec.relative != (claim.relative_to is not None):
        raise ConfigError(f"{where}: {claim.metric} " + ("is relative: set relative_to to what it is compared with"
                                                         if spec.relative else "takes no relative_to"))
    if spec.unit != "date" and not (spec.low <= claim.value and (spec.high is None or claim.value <= spec.high)):
        raise ConfigError(f"{where}: {claim.value} {spec.unit} is out of range for {claim.metric} (from {spec.low:g}"
                          + (f" to {spec.high:g}" if spec.high is not None else "") + "): values are plain numbers "
                          f"in the unit (1.6T parameters = 1600000000000; ratios in percent of relative_to)")


def _build(raw: dict[str, Any], file: Path) -> Claim:
    where = f"{file.name}: claim {raw.get('id', '?')}"
    if raw.get("kind") == "fact":
        raw.setdefault("metric", None)  # a fact names its quantity: no default
    try:
        _value(raw, where)
        source = Source(**{k: str(v) for k, v in raw.pop("source").items()})
        protocol = Protocol(**(raw.pop("protocol", None) or {}))
        claim = Claim(**{**raw, "price_books": tuple(raw.get("price_books") or ())}, source=source,
                      protocol=protocol, file=file.name)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if claim.kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {sorted(KINDS)}")
    if claim.kind != "fact" and claim.unit not in KINDS[claim.kind]:  # a fact's unit follows its metric
        raise ConfigError(f"{where}: a {claim.kind} claim's unit is one of {sorted(KINDS[claim.kind])}")
    if claim.bound not in BOUNDS or (claim.kind != "fact" and claim.bound not in ("=", "~")):
        raise ConfigError(f"{where}: bound is one of {sorted(BOUNDS)}; a {claim.kind} claim takes only '=' or '~' "
                          f"(a verdict compares one value)")
    if claim.kind == "fact":
        _check_fact(claim, where)
    elif claim.relative_to is not None:
        raise ConfigError(f"{where}: relative_to is for relative facts only")
    elif claim.kind != "score" and claim.metric not in QUANTITIES[claim.kind]:
        raise ConfigError(f"{where}: a {claim.kind} claim's metric is one of {sorted(QUANTITIES[claim.kind])}")
    elif claim.kind == "score" and claim.metric != SCORE_METRIC[claim.unit]:
        raise ConfigError(f"{where}: a score in {claim.unit} has metric: {SCORE_METRIC[claim.unit]}")
    if claim.kind == "score" and claim.unit == "rating" and claim.task is not None:
        raise ConfigError(f"{where}: a rating is no percentage and no task yields one: set task: null "
                          f"(task {claim.task} would judge {claim.value} as a percentage)")
    if claim.kind == "score" and claim.unit == "percent" and not 0 <= claim.value <= 100:
        raise ConfigError(f"{where}: a score is a percentage in [0, 100], got {claim.value}")
    return claim


def load_claims(directory: Path = CLAIMS_DIR) -> list[Claim]:
    """Every claim in the registry; ids are unique across files."""
    claims: list[Claim] = []
    for file in sorted(Path(directory).glob("*.yaml")):
        data = yaml.load(file.read_text(), Loader=_SAFE_LOADER) or {}
        for raw in data.get("claims", []):
            claims.append(_build(dict(raw), file))
    seen: dict[str, str] = {}
    for claim in claims:
        if claim.id in seen:
            raise ConfigError(f"claim id {claim.id} is in both {seen[claim.id]} and {claim.file}")
        seen[claim.id] = claim.file
    return claims
