"""A rate-limited provider: a loopback server that accepts 4 requests at once (429 beyond, no
Retry-After, like DeepSeek's), driven at concurrency 4 and at concurrency 64, side by side in one run.
With waits outside the slots and a limiter that finds the capacity, 64 should cost little more than 4.

    python bench/bench_rate_limited.py [--requests 120] [--latency 0.05] [--repeats 3]

Prints the medians (wall time, 429s, the limit at the end) and the ratio of the two wall times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.config import ModelConfig  # noqa: E402
from harness.endpoints.base import ChatRequest  # noqa: E402
from harness.endpoints.openai_compat import OpenAICompatEndpoint  # noqa: E402
from tests.fault_server import FaultServer  # noqa: E402


def run(concurrency: int, n: int, latency: float, capacity: int) -> tuple[float, int, int]:
    os.environ.setdefault("BENCH_KEY", "not-needed")
    model = ModelConfig(name="rate-limited", model_id="m", provider="openai_compat", api_key_env="BENCH_KEY",
                        concurrency=concurrency, max_retries=8)
    request = ChatRequest(({"role": "user", "content": "hi"},), "m", {"max_tokens": 8})
    with FaultServer(latency_s=latency) as server:
        server.set_capacity(capacity, headers={})

        async def go() -> tuple[float, int]:
            endpoint = OpenAICompatEndpoint(model, server.base_url)
            started = time.perf_counter()
            try:
                await asyncio.gather(*(endpoint.complete(request) for _ in range(n)))
                return time.perf_counter() - started, endpoint.limiter.limit
            finally:
                await endpoint.aclose()

        wall, limit = asyncio.run(go())
        return wall, server.outcomes["429"], limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[int, list[tuple[float, int, int]]] = {args.capacity: [], 64: []}
    for _ in range(args.repeats):  # alternating, so drift on the machine hits both alike
        for concurrency in results:
            results[concurrency].append(run(concurrency, args.requests, args.latency, args.capacity))
    ideal = args.requests * args.latency / args.capacity
    medians = {}
    for concurrency, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        medians[concurrency] = wall
        print(f"concurrency {concurrency:>3}: {wall:.2f} s (ideal {ideal:.2f} s), 429s {statistics.median(r[1] for r in runs):.0f}, "
              f"limit at the end {statistics.median(r[2] for r in runs):.0f}; runs {[round(r[0], 2) for r in runs]}")
    print(f"concurrency 64 / concurrency {args.capacity}: {medians[64] / medians[args.capacity]:.2f}x the time "
          f"(target <= 1.3x)")


if __name__ == "__main__":
    main()
