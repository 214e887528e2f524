"""What the price book says of a price claim, handed from billing (spend) to the verdicts (claims)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# The verdict statuses a price can have (harness.claims.verdicts adds the score-only ones).
CONSISTENT, BELOW, ABOVE, NOT_MEASURED = "consistent", "below claim", "above claim", "not measured"


@dataclass(frozen=True)
class PriceMatch:
    status: str              # consistent | above claim | below claim | not measured (the verdict statuses)
    book_value: float | None  # the book's price on the claim's date (USD per 1M tokens)
    period: str              # the book period in force on the claim's date
    span: str                # that period's dates, "2026-04-24..2026-05-05"
    matching: tuple[str, ...]  # every period (any date) whose price equals the claim, with its dates
    detail: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["matching"] = list(self.matching)
        return d
