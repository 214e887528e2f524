"""The claims registry: published numbers with the protocol and source they were stated with.

Claims live in conf/claims/*.yaml, each file a list under `claims:`. One claim is one number:
a score (percent), a price (USD per 1M tokens) or a speed (ms to first token, tokens per second).
Whatever the source does not say is written `unknown`, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config import ConfigError

CLAIMS_DIR = Path(__file__).resolve().parents[2] / "conf" / "claims"
UNKNOWN = "unknown"
KINDS = {"score": {"percent"}, "price": {"usd_per_mtok"}, "speed": {"ms", "tokens_per_s"}}
# What a price or speed claim is about.
QUANTITIES = {"score": {"accuracy"}, "price": {"input", "cached_input", "output"},
              "speed": {"time_to_first_token", "output_tokens_per_s"}}


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
    kind: str  # score | price | speed
    model_as_named: str
    benchmark: str
    value: float
    unit: str
    source: Source
    model: str | None = None  # our model config name, when one matches
    # A price claim whose model is ambiguous ("DeepSeek V4"): the price-book entries it may be about.
    price_books: tuple[str, ...] = ()
    task: str | None = None  # our task config name; None = no task can check it yet
    metric: str = "accuracy"  # for scores: what the value is (accuracy); for price/speed: QUANTITIES
    protocol: Protocol = field(default_factory=Protocol)
    notes: str = ""
    file: str = ""

    @property
    def checkable(self) -> bool:
        return self.kind != "score" or self.task is not None


def _build(raw: dict[str, Any], file: Path) -> Claim:
    where = f"{file.name}: claim {raw.get('id', '?')}"
    try:
        source = Source(**{k: str(v) for k, v in raw.pop("source").items()})
        protocol = Protocol(**(raw.pop("protocol", None) or {}))
        claim = Claim(**raw, source=source, protocol=protocol, file=file.name)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if claim.kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {sorted(KINDS)}")
    if claim.unit not in KINDS[claim.kind]:
        raise ConfigError(f"{where}: a {claim.kind} claim's unit is one of {sorted(KINDS[claim.kind])}")
    if claim.kind != "score" and claim.metric not in QUANTITIES[claim.kind]:
        raise ConfigError(f"{where}: a {claim.kind} claim's metric is one of {sorted(QUANTITIES[claim.kind])}")
    if claim.kind == "score" and not 0 <= claim.value <= 100:
        raise ConfigError(f"{where}: a score is a percentage in [0, 100], got {claim.value}")
    return claim


def load_claims(directory: Path = CLAIMS_DIR) -> list[Claim]:
    """Every claim in the registry; ids are unique across files."""
    claims: list[Claim] = []
    for file in sorted(Path(directory).glob("*.yaml")):
        data = yaml.safe_load(file.read_text()) or {}
        for raw in data.get("claims", []):
            claims.append(_build(dict(raw), file))
    seen: dict[str, str] = {}
    for claim in claims:
        if claim.id in seen:
            raise ConfigError(f"claim id {claim.id} is in both {seen[claim.id]} and {claim.file}")
        seen[claim.id] = claim.file
    return claims
