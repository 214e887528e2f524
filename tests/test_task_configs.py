"""Every task config in conf/task points at an lm-eval task that exists in its folders, with the
headline filter and metric that task defines (read from the YAML: no dataset is downloaded)."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from lm_eval.tasks._yaml_loader import load_yaml
from omegaconf import OmegaConf

from harness.config import RunConfig, TaskConfig, register_configs
from harness.benchmarks.lm_tasks import leaf_task_names, task_manager

CONF = Path(__file__).resolve().parent.parent / "conf"
CONFIGS = sorted((CONF / "task").glob("*.yaml"))


def composed(name: str) -> TaskConfig:
    """The task config as a run sees it: Hydra-composed (subsets extend a base through `defaults`)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=[f"task={name}"])
    run: RunConfig = OmegaConf.to_object(cfg)
    return run.task


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_task_config_matches_its_lm_eval_task(path):
    cfg = composed(path.stem)
    assert cfg.name == path.stem and cfg.benchmark
    manager = task_manager(cfg)
    leaves = leaf_task_names(manager, cfg.lm_eval_task)
    assert leaves, cfg.lm_eval_task
    for leaf in leaves:
        leaf_yaml = load_yaml(manager.task_index[leaf].yaml_path, resolve_func=False)
        filters = [f["name"] for f in leaf_yaml.get("filter_list") or []] or ["none"]
        assert cfg.filter in filters, (leaf, filters)
        metrics = [m["metric"] for m in leaf_yaml.get("metric_list") or []]
        assert cfg.metric in metrics, (leaf, metrics)


def test_the_benchmarks_claims_name_have_task_configs():
    benchmarks = {composed(p.stem).benchmark for p in CONFIGS}
    assert {"GSM8K", "MMLU-Pro", "GPQA Diamond", "MMLU", "LiveCodeBench"} <= benchmarks
