"""How much indexing only a task's own folders saves, side by side in one run:
lm-eval's default TaskManager (every task) vs harness.benchmarks.lm_tasks.task_manager (the task's folders).

    python bench/bench_task_index.py [repeats]
"""

from __future__ import annotations

import statistics
import sys
import time

from lm_eval.tasks import TaskManager

from harness.config import TaskConfig
from harness.benchmarks.lm_tasks import task_manager


def _time(build, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        build()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(repeats: int = 3) -> None:
    cfg = TaskConfig(name="mmlu_pro", lm_eval_task="mmlu_pro", task_dirs=["lm_eval:mmlu_pro"])
    ours = _time(lambda: task_manager(cfg), repeats)
    full = _time(lambda: TaskManager(), repeats)
    print(f"index only mmlu_pro's folder: {ours * 1000:8.1f} ms (median of {repeats})")
    print(f"index every lm-eval task:     {full * 1000:8.1f} ms (median of {repeats})")
    print(f"ratio full / ours: {full / ours:.0f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
