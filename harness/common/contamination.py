"""Which benchmark items a model could have trained on, from its published dates.

Why: a score on problems the model may have seen measures memory, not skill; LiveCodeBench exists to
score only problems released after a model's cutoff. The boundary is the model's knowledge cutoff when
published, else its release date (training ends before release). A date given to the month or year
means its last day. `task.loader_kwargs.start_date=auto` starts the task's window the day after the
boundary; a window that starts on or before it makes a score verdict inconclusive (claims.verdicts).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from harness.config import ConfigError, ModelConfig, ModelFacts, TaskConfig

AUTO = "auto"


@dataclass(frozen=True)
class Boundary:
    last_seen: dt.date | None  # the latest date whose items the model may have trained on
    basis: str  # what the date rests on, for the records


def _day(text: Any, setting: str, last: bool = True) -> dt.date:
    """'2025-01-15' -> that day; '2025-01' -> 2025-01-31 (last) or 2025-01-01; '2025' -> its last or first day."""
    parts = str(text).strip().split("-")
    try:
        numbers = [int(p) for p in parts]
        if len(numbers) == 3:
            return dt.date(*numbers)
        if len(numbers) == 2:
            return dt.date(numbers[0], numbers[1], calendar.monthrange(numbers[0], numbers[1])[1] if last else 1)
        if len(numbers) == 1:
            return dt.date(numbers[0], 12, 31) if last else dt.date(numbers[0], 1, 1)
    except ValueError:
        pass
    raise ConfigError(f"{setting}={text!r} is not a date: write YYYY-MM-DD, YYYY-MM or YYYY")



def boundary(facts: ModelFacts) -> Boundary:
    source = f" ({facts.source})" if facts.source else ""
    if facts.knowledge_cutoff:
        return Boundary(_day(facts.knowledge_cutoff, "model.facts.knowledge_cutoff"),
                        f"knowledge cutoff {facts.knowledge_cutoff}{source}")
    if facts.release_date:
        return Boundary(_day(facts.release_date, "model.facts.release_date"),
                        f"release date {facts.release_date} (no published cutoff){source}")
    return Boundary(None, "neither a release date nor a knowledge cutoff in the model config (model.facts)")


def resolve_window(task: TaskConfig, model: ModelConfig) -> tuple[TaskConfig, dict[str, Any] | None]:
    """For a task with a date window (loader_kwargs.start_date): `auto` becomes the day after the
    model's boundary; returns the task to run and the record for summary.json (None: no window)."""
    kwargs = task.loader_kwargs or {}
    if "start_date" not in kwargs:
        return task, None
    start, limit = kwargs.get("start_date"), boundary(model.facts)
    auto = str(start).strip().lower() == AUTO
    if auto:
        if limit.last_seen is None:
            raise ConfigError(
                f"task.loader_kwargs.start_date=auto needs the model's knowledge cutoff or release date, and model "
                f"'{model.name}' has neither: set model.facts.knowledge_cutoff=YYYY-MM-DD (or release_date), or give "
                f"the window yourself with task.loader_kwargs.start_date=YYYY-MM-DD")
        start = (limit.last_seen + dt.timedelta(days=1)).isoformat()
        task = dataclasses.replace(task, loader_kwargs={**kwargs, "start_date": start})
    first_day = _day(start, "task.loader_kwargs.start_date", last=False) if start else None
    clean = first_day is not None and limit.last_seen is not None and first_day > limit.last_seen
    return task, {"window_start": start, "window_end": kwargs.get("end_date"), "auto": auto,
                  "model_last_seen": limit.last_seen.isoformat() if limit.last_seen else None,
                  "basis": limit.basis, "after_boundary": clean}


def contamination_reason(record: dict[str, Any] | None) -> str | None:
    """Why a verdict on this window cannot speak to the claim, or None when the window is clean."""
    if not record or record.get("after_boundary"):
        return None
    if record.get("model_last_seen") is None:
        return (f"contamination: the model's training dates are unknown ({record['basis']}), so the problems "
                f"(from {record.get('window_start') or 'the first'}) may be in its training data; set model.facts")
    return (f"contamination: the problems start {record.get('window_start') or 'at the first ever'}, not after the "
            f"model's {record['basis']} (last date it may have seen: {record['model_last_seen']}); "
            f"run with task.loader_kwargs.start_date=auto")
