"""The contamination gate: a model's published dates set the first problem a claim check may use
(task.loader_kwargs.start_date=auto), and a verdict on a window that starts earlier is inconclusive."""
import dataclasses
import datetime as dt
import json

import pytest

from harness.claims.registry import Claim, Protocol, Source
from harness.claims.verdicts import BELOW, INCONCLUSIVE, judge
from harness.common.contamination import boundary, resolve_window
from harness.common.stats import mean_estimate
from harness.config import ConfigError, ModelConfig, ModelFacts, RunConfig, TaskConfig
from tests.fault_server import FaultServer
from tests.test_lcb_e2e import PROBLEMS, lcb_args, scripted_answer
from tests.conftest import run_harness

LCB = TaskConfig(name="livecodebench", lm_eval_task="livecodebench", benchmark="LiveCodeBench",
                 loader_kwargs={"release": "release_v3", "start_date": "auto", "end_date": None})


def _model(**facts) -> ModelConfig:
    return ModelConfig(name="m", model_id="m", facts=ModelFacts(**facts))


def test_the_boundary_is_the_cutoff_else_the_release_and_a_month_means_its_last_day():
    assert boundary(ModelFacts(knowledge_cutoff="2025-01", release_date="2025-06-03")).last_seen == dt.date(2025, 1, 31)
    assert boundary(ModelFacts(release_date="2025-06-03")).last_seen == dt.date(2025, 6, 3)
    assert boundary(ModelFacts(release_date="2024")).last_seen == dt.date(2024, 12, 31)
    assert boundary(ModelFacts()).last_seen is None
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        boundary(ModelFacts(knowledge_cutoff="early 2025"))


def test_auto_starts_the_day_after_and_is_recorded():
    task, record = resolve_window(LCB, _model(knowledge_cutoff="2024-02", source="the model card"))
    assert task.loader_kwargs["start_date"] == "2024-03-01" and task.loader_kwargs["release"] == "release_v3"
    assert record == {"window_start": "2024-03-01", "window_end": None, "auto": True, "model_last_seen": "2024-02-29",
                      "basis": "knowledge cutoff 2024-02 (the model card)", "after_boundary": True}


def test_auto_without_dates_is_refused_naming_the_fix():
    with pytest.raises(ConfigError, match="model.facts.knowledge_cutoff"):
        resolve_window(LCB, _model())


def test_windows_on_or_before_the_boundary_are_flagged_and_tasks_without_a_window_are_not():
    model = _model(release_date="2024-05-04")
    for start, clean in [("2024-05-04", False), ("2024-05-05", True), (None, False)]:
        task = dataclasses.replace(LCB, loader_kwargs={**LCB.loader_kwargs, "start_date": start})
        assert resolve_window(task, model)[1]["after_boundary"] is clean
    assert resolve_window(TaskConfig(name="gsm8k", lm_eval_task="gsm8k"), model) == (
        TaskConfig(name="gsm8k", lm_eval_task="gsm8k"), None)


def _verdict(record):
    cfg = RunConfig(model=ModelConfig(name="v4-pro", model_id="m"), task=dataclasses.replace(LCB, loader_kwargs=None))
    claim = Claim(id="c", kind="score", model_as_named="V4", benchmark="LiveCodeBench", value=93.5, unit="percent",
                  source=Source("s", "2026-04"), model="v4-pro", task="livecodebench", protocol=Protocol())
    e = mean_estimate([1] * 120 + [0] * 80)
    summary = {"tasks": {"livecodebench": {"value": e.value, "ci95": list(e.ci95), "n": 200, "cost_usd": 1.0}},
               "dataset": {}, "cost_usd": 1.0, "contamination": record}
    [v] = judge([claim], cfg, summary)
    return v


def test_a_verdict_on_problems_the_model_may_have_seen_is_inconclusive():
    _, before = resolve_window(dataclasses.replace(LCB, loader_kwargs={"start_date": "2024-01-01"}),
                               _model(knowledge_cutoff="2024-06"))
    v = _verdict(before)
    assert v.status == INCONCLUSIVE and v.strict_status == BELOW
    assert "contamination: the problems start 2024-01-01, not after the model's knowledge cutoff 2024-06" in v.detail
    _, clean = resolve_window(LCB, _model(knowledge_cutoff="2024-06"))
    assert _verdict(clean).status == BELOW  # 60 % against a claim of 93.5 %, on clean problems
    unknown = _verdict(resolve_window(dataclasses.replace(LCB, loader_kwargs={"start_date": None}), _model())[1])
    assert unknown.status == INCONCLUSIVE and "training dates are unknown" in unknown.detail


def test_a_run_with_start_date_auto_uses_only_problems_after_the_cutoff(tmp_path):
    results = tmp_path / "results"
    with FaultServer(content_fn=scripted_answer) as server:
        done = run_harness("model=openai-compatible", f"model.base_url={server.base_url}", "model.model_id=m",
                           "model.facts.knowledge_cutoff=2024-05", "model.facts.source=test card",
                           *lcb_args(results, "task.loader_kwargs.start_date=auto", "tracking=none"))
        sent = server.completed
    assert done.returncode == 0, done.stderr[-3000:]
    after = [p for p in PROBLEMS if p.contest_date.date() > dt.date(2024, 5, 31)]
    assert sent == len(after) == 3
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    assert summary["tasks"]["livecodebench"]["n"] == 3
    assert summary["contamination"]["window_start"] == "2024-06-01" and summary["contamination"]["after_boundary"]
