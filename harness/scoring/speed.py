"""How fast the endpoint answered, from the responses this run streamed (cached ones are left out: their
timing belongs to the run that made them).

Enters: response records. Leaves: per task and overall, p50/p90 of time to first token, time to the
first answer token (after reasoning), output tokens per second and the longest gap between chunks,
with the output length they were measured at (speed depends on it; a claim rarely says).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from harness.common.exchange import ResponseRecord


def _quantiles(values: list[float], scale: float = 1.0) -> dict[str, float] | None:
    if not values:
        return None
    p50, p90 = np.percentile(np.asarray(values) * scale, [50, 90])
    return {"p50": float(p50), "p90": float(p90)}


def speed_summary(records: Iterable[ResponseRecord]) -> dict[str, Any] | None:
    """None when nothing was streamed in this run."""
    timed = [r.completion for r in records if not r.from_cache and r.completion.ttft_s is not None]
    if not timed:
        return None
    return {
        "n_streamed": len(timed),
        "ttft_ms": _quantiles([c.ttft_s for c in timed], 1000),
        "answer_ttft_ms": _quantiles([c.answer_ttft_s for c in timed if c.answer_ttft_s is not None], 1000),
        "output_tokens_per_s": _quantiles([c.tokens_per_s for c in timed if c.tokens_per_s is not None]),
        "max_gap_ms": _quantiles([c.max_gap_s for c in timed if c.max_gap_s is not None], 1000),
        "output_tokens": _quantiles([float(c.usage.output_tokens) for c in timed]),
        "input_tokens": _quantiles([float(c.usage.input_tokens) for c in timed]),
    }
