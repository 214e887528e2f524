"""The garbage collector's settings while requests are on the wire.

Every answer allocates a few hundred container objects (parsed JSON, records), so with Python's
defaults a young collection runs every few requests and a full one walks the whole heap (lm-eval,
datasets and the run's configs included) several times a run, stalling the event loop each time:
at 256 requests in flight that was about 5% of the client's time and 1-2% of its throughput
(bench/throughput.py). During the request phase, what start-up built is frozen (full collections
skip it: it is not garbage) and young collections run every 10,000 allocations instead of 700;
cycles are still collected, a little later. Both are restored afterwards."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

YOUNG_THRESHOLD = 10_000


@contextlib.contextmanager
def requests_phase() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.freeze()
    if threshold[0]:  # 0: collection switched off by whoever runs us; left so
        gc.set_threshold(max(threshold[0], YOUNG_THRESHOLD), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
