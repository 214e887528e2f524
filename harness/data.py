"""The dataset command line: (`python -m harness.data`, composing the same Hydra config as `python -m harness`):

    pull task=<name> [data.mirror=DIR] [--include PATTERN ...]
        download dataset_repo at dataset_revision into DIR/<repo>/ (default DIR: data.mirror, else
        HARNESS_DATA_MIRROR, else ${results_dir}/mirror, which is git-ignored with results/), write
        DIR/<repo>/.harness-pin.json (resolved commit + file hashes, informative), check the files
        against the task's dataset_sha256 if it has one, and print the pins as YAML.
    hash DIR
        print DIR's per-file sha256 (and the combined hash) as YAML to paste into a task config.
    verify task=<name> [data.mirror=DIR]
        locate the task's data as a run would and check it against the pins.

Exit codes: 0 done, 1 verify found a mismatch that data.allow_hash_mismatch=true lets through,
2 an error the user can act on (message on stderr, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from harness.benchmarks.data import PROJECT_ROOT, mirror_root, prepare_dataset, pull
from harness.benchmarks.pins import PIN_FILE, DataError, HashMismatchError, combined_sha256, hash_folder, read_pin, verify
from harness.config import ConfigError

CONF_DIR = PROJECT_ROOT / "conf"


def pins_yaml(files: Mapping[str, str], header: str, repo: str | None = None, revision: str | None = None) -> str:
    """Task-config YAML for the pins, with the combined hash in a comment."""
    import yaml

    block: dict[str, Any] = {}
    if repo:
        block["dataset_repo"] = repo
    if revision:
        block["dataset_revision"] = revision
    block["dataset_sha256"] = dict(files)
    comment = f"# {header}: {len(files)} files, combined sha256 {combined_sha256(files)}\n"
    return comment + yaml.safe_dump(block, sort_keys=False, default_flow_style=False)


# Fields this module reads that the config schema may not declare yet: plain overrides of them
# become `++` (add or override) so the CLI works before and after they are added.
_PENDING_FIELDS = {"data": "RunConfig", "task.dataset_sha256": "TaskConfig", "task.dataset_config": "TaskConfig"}


def _declared(path: str) -> bool:
    from harness import config as schema

    return path.rsplit(".", 1)[-1] in {f.name for f in fields(getattr(schema, _PENDING_FIELDS[path]))}


def compose_config(overrides: Sequence[str]):
    """The Hydra config `python -m harness <overrides>` would run with."""
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs

    rewritten = []
    for override in overrides:
        key = override.split("=", 1)[0]
        if not key.startswith(("+", "~")) and any(
                (key == p or key.startswith(p + ".")) and not _declared(p) for p in _PENDING_FIELDS):
            override = "++" + override
        rewritten.append(override)
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=rewritten)


def _task_pins(cfg) -> dict[str, Any]:
    from omegaconf import OmegaConf

    def get(key, default=None):
        value = OmegaConf.select(cfg, key, default=default)
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value

    return {
        "task": get("task.name"),
        "repo": get("task.dataset_repo"),
        "revision": get("task.dataset_revision"),
        "config": get("task.dataset_config"),
        "dataset_path": get("task.dataset_path"),
        "expected": get("task.dataset_sha256") or None,
        "mirror": get("data.mirror"),
        "allow_mismatch": bool(get("data.allow_hash_mismatch", False)),
        "results_dir": get("results_dir", "results"),
    }


def _cmd_pull(overrides: Sequence[str], include: list[str] | None) -> int:
    pins = _task_pins(compose_config(overrides))
    task, repo, revision = pins["task"], pins["repo"], pins["revision"]
    if not repo:
        raise ConfigError(f"task '{task}' has no task.dataset_repo: nothing to pull")
    root = mirror_root(pins["mirror"])
    directory = root[0] if root else str(Path(pins["results_dir"]) / "mirror")
    print(f"# pulling {repo} at {revision or 'main'} into {Path(directory) / repo} ...", flush=True)
    folder = pull(repo, revision, Path(directory), allow_patterns=include, task=task)
    sha = (read_pin(folder) or {}).get("revision")
    record = verify(folder, pins["expected"], True, repo=repo, revision=sha, config=pins["config"],
                    source="mirror", task=task)
    if record.mismatch and not pins["allow_mismatch"]:
        raise HashMismatchError(
            f"the files just pulled from {repo} at {sha} into {folder} differ from task {task}'s dataset_sha256 "
            f"({', '.join(record.differing)}): check task.dataset_revision and the pins (`python -m harness.data "
            f"hash {folder}` prints these files' hashes), or set data.allow_hash_mismatch=true.")
    print(f"# wrote {folder} and {folder / PIN_FILE}")
    if record.pinned:
        print(f"# matches task {task}'s dataset_sha256" if not record.mismatch
              else f"# DIFFERS from task {task}'s dataset_sha256: {', '.join(record.differing)}")
    else:
        print(f"# task {task} pins no file hashes yet: add these lines to conf/task/{task}.yaml")
    if revision != sha:
        print(f"# the task's dataset_revision is {revision or 'unset'}; the files are from commit {sha}")
    print(pins_yaml(record.files, f"{repo} at {sha}", repo=repo, revision=sha), end="")
    hint = f"python -m harness task={task} data.mirror={directory}"
    if pins["dataset_path"]:
        hint += " task.dataset_path=null"
    print(f"# evaluate from this copy: {hint}")
    return 0


def _cmd_hash(folder: str) -> int:
    path = Path(folder)
    files = hash_folder(path)
    if not files:
        raise DataError(f"{path} holds no files to hash")
    print(pins_yaml(files, str(path.resolve())), end="")
    return 0


def _cmd_verify(overrides: Sequence[str]) -> int:
    pins = _task_pins(compose_config(overrides))
    record = prepare_dataset(repo=pins["repo"], revision=pins["revision"], dataset_path=pins["dataset_path"],
                             mirror=pins["mirror"], expected=pins["expected"], allow_mismatch=pins["allow_mismatch"],
                             config=pins["config"], task=pins["task"])
    state = ("MISMATCH (allowed by data.allow_hash_mismatch): " + ", ".join(record.differing) if record.mismatch
             else "matches the pinned hashes" if record.pinned else "no pinned hashes to compare (task.dataset_sha256)")
    print(f"# {pins['task']}: {record.local_path} ({record.source}): {len(record.files)} files, {state}")
    print(pins_yaml(record.files, f"{record.repo} at {record.resolved_revision or record.revision or '?'}"), end="")
    return 1 if record.mismatch else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.data",
                                     description="Dataset pins, mirror and content hashes for harness tasks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_pull = sub.add_parser("pull", help="download a task's dataset into the mirror and print its pins")
    p_pull.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. task=mmlu_pro data.mirror=/data/hf")
    p_pull.add_argument("--include", action="append", metavar="PATTERN",
                        help="only files matching this glob (repeatable), e.g. --include 'main/*' --include README.md")
    p_hash = sub.add_parser("hash", help="print a folder's file hashes as task-config YAML")
    p_hash.add_argument("folder")
    p_verify = sub.add_parser("verify", help="check a task's data against its pins, as a run would")
    p_verify.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        if args.command == "pull":
            return _cmd_pull(args.overrides, args.include)
        if args.command == "hash":
            return _cmd_hash(args.folder)
        return _cmd_verify(args.overrides)
    except (ConfigError, HydraException, OmegaConfBaseException, OSError) as exc:
        print(f"[harness.data] error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("[harness.data] interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
