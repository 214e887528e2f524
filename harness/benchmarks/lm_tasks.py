"""Turns a task config into lm-eval Task objects, indexing only the folders the task needs
(lm-eval's full index costs ~20 s), and fingerprints the documents it will evaluate."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import lm_eval
import yaml
from lm_eval.api.task import Task
from lm_eval.tasks import TaskManager

from harness.config import ConfigError, TaskConfig
from harness.benchmarks import lm_eval_speedups
from harness.benchmarks.data import resolve_dataset_path
from harness.benchmarks.pins import DataError
from harness.common.errors import root_cause

LM_EVAL_TASKS_DIR = Path(lm_eval.__file__).parent / "tasks"
PROJECT_TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"


@dataclass(frozen=True)
class DatasetFingerprint:
    """Where the documents came from and a hash of their content (same for hub and mirror)."""

    repo: str
    revision: str | None
    local_path: str | None
    sha256: str
    n_docs: int


def resolve_task_dir(entry: str) -> Path:
    if entry.startswith("lm_eval:"):
        path = LM_EVAL_TASKS_DIR / entry[len("lm_eval:"):]
    else:
        path = Path(entry) if Path(entry).is_absolute() else PROJECT_TASKS_DIR / entry
    if not path.is_dir():
        raise ConfigError(f"task folder {path} (from task.task_dirs entry '{entry}') does not exist")
    return path


def local_cache_dir(folder: Path) -> Path:
    """A datasets cache folder of this local copy's own. `datasets` keys its cache for a local
    folder by the folder's name and file patterns only, so two different copies named
    openai/gsm8k would silently share one cache and the second would read the first's data."""
    state = hashlib.sha256(str(folder).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        state.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return Path(datasets.config.HF_DATASETS_CACHE) / "harness-local" / state.hexdigest()[:16]


def task_overrides(cfg: TaskConfig) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    dataset_kwargs: dict[str, Any] = {}
    if cfg.dataset_path:
        local = resolve_dataset_path(cfg.dataset_path)
        if not local.is_dir():
            raise ConfigError(
                f"task.dataset_path={cfg.dataset_path} is not a folder; point it at a copy of the dataset "
                f"in the hub's file layout (README.md with configs, plus the data files)"
            )
        overrides["dataset_path"] = str(local)
        dataset_kwargs["cache_dir"] = str(local_cache_dir(local))
    if cfg.dataset_revision:
        dataset_kwargs["revision"] = cfg.dataset_revision
    if cfg.loader_kwargs is not None:  # the task's own loader reads the files; `datasets` kwargs do not apply
        if not cfg.dataset_path:
            raise ConfigError(f"task '{cfg.name}' has loader_kwargs but no local copy of its data (task.dataset_path)")
        dataset_kwargs = {**cfg.loader_kwargs, "data_dir": overrides.pop("dataset_path")}
    if dataset_kwargs:
        overrides["dataset_kwargs"] = dataset_kwargs
    if cfg.num_fewshot is not None:
        overrides["num_fewshot"] = cfg.num_fewshot
    if cfg.repeats is not None:
        overrides["repeats"] = cfg.repeats
    return overrides


class _LenientLoader(yaml.SafeLoader):
    """Reads lm-eval YAML structure without resolving its `!function` tags."""


_LenientLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def leaf_task_names(manager: TaskManager, item: str | dict[str, Any]) -> list[str]:
    """The tasks under a task, tag or group (recursively, inline groups included), read from the
    YAML without building anything, since building a task downloads its dataset."""
    if isinstance(item, dict):  # an inline group or a task reference inside a group's `task:` list
        members = item.get("task")
        if isinstance(members, list):
            return [leaf for member in members for leaf in leaf_task_names(manager, member)]
        return leaf_task_names(manager, members or item["group"])
    if item in manager.all_tags:
        return sorted(manager.task_index[item].tags)
    if item not in manager.all_groups:
        return [item]
    entry = manager.task_index[item]
    raw = yaml.load(Path(entry.yaml_path).read_text(), Loader=_LenientLoader) if entry.yaml_path else entry.cfg
    return [leaf for member in (raw or {}).get("task", []) for leaf in leaf_task_names(manager, member)]


def task_manager(cfg: TaskConfig) -> TaskManager:
    """An lm-eval TaskManager over only this task's folders. Pass it to simple_evaluate too: given
    none, it builds one over every lm-eval task (~14,000 YAML files, 15 s here)."""
    lm_eval_speedups.install()
    return TaskManager(include_defaults=False, include_path=[str(resolve_task_dir(d)) for d in cfg.task_dirs])


def load_tasks(cfg: TaskConfig, manager: TaskManager | None = None) -> dict[str, Task]:
    """{leaf task name: Task} for the configured lm-eval task or group, with our overrides applied."""
    manager = manager or task_manager(cfg)
    if cfg.lm_eval_task not in manager.task_index:
        raise ConfigError(
            f"lm-eval task '{cfg.lm_eval_task}' is not in {cfg.task_dirs}; known there: "
            f"{sorted(manager.all_tasks)[:30]}"
        )
    overrides = task_overrides(cfg)
    # Each leaf is referenced inside a wrapper group: that is how lm-eval merges overrides into a
    # registered task. Groups are expanded to their leaves first, because lm-eval 0.4.13 passes the
    # wrapper's own `task:` list down into a nested group's children as their name.
    members = [{"task": leaf, **overrides} for leaf in leaf_task_names(manager, cfg.lm_eval_task)]
    try:
        return manager.load([{"group": "harness_run", "task": members}])["tasks"]
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception as exc:  # datasets / pyarrow / OSError: the files are there but cannot be read
        cause = root_cause(exc)
        raise DataError(
            f"cannot read the data of task {cfg.name} from {cfg.dataset_path or cfg.dataset_repo}: "
            f"{type(cause).__name__}: {str(cause)[:300].rstrip('.')}. The files are unreadable or not in the dataset's format; "
            f"fetch them again (python -m harness.data pull task={cfg.name}) or point task.dataset_path at a "
            f"good copy.") from None



def check_task_config(tasks: dict[str, Task], cfg: TaskConfig) -> None:
    """Fail before any request is paid for if the headline filter or an extraction rule does not exist."""
    from harness.scoring.extract import EXTRACTORS, SENSITIVITY_RULES

    if cfg.extractor and cfg.extractor not in EXTRACTORS:
        raise ConfigError(f"task.extractor={cfg.extractor} is not a known rule; known: {sorted(EXTRACTORS)}")
    if cfg.answer_family and cfg.answer_family not in SENSITIVITY_RULES:
        raise ConfigError(f"task.answer_family={cfg.answer_family} is not known; known: {sorted(SENSITIVITY_RULES)}")
    for name, task in tasks.items():
        available = [f["name"] for f in (task.config.filter_list or [])] or ["none"]
        if cfg.filter not in available and len(available) > 1:
            raise ConfigError(f"task '{name}' has no filter '{cfg.filter}' (task.filter); it has {available}")


def fingerprint(task: Task, cfg: TaskConfig) -> DatasetFingerprint:
    hasher = hashlib.sha256()
    n = 0
    for doc in task.eval_docs:
        hasher.update(json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str).encode())
        hasher.update(b"\n")
        n += 1
    return DatasetFingerprint(
        repo=cfg.dataset_repo or str(task.config.dataset_path),
        revision=cfg.dataset_revision,
        local_path=str(task.config.dataset_path) if cfg.dataset_path else None,
        sha256=hasher.hexdigest(),
        n_docs=n,
    )
