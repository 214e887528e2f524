"""Which task's score is the run's headline: the group's for a group task (lm-eval's MMLU-Pro), else the
only task's. The run's MLflow `score` and the claims' verdicts read the same one."""

from __future__ import annotations

from typing import Any


def headline_task(summary: dict[str, Any]) -> str | None:
    """The key in summary["tasks"] of the headline score (None without tasks)."""
    tasks = summary.get("tasks") or {}
    for name, s in tasks.items():
        if s.get("subtasks"):
            return name
    return next(iter(tasks), None)
