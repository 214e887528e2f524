"""Dataset pins: file hashes, their combined hash, and verification of a folder against them.

Enters: a local folder in the hub's layout and the task's pins. Leaves: a VerifiedData record (or a
DataError naming the files). What is hashed and how is described in harness.benchmarks.data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import ConfigError

log = logging.getLogger(__name__)

PIN_FILE = ".harness-pin.json"
_LISTED = 10  # files named in an error message before "and N more"


class DataError(ConfigError):
    """The task's data cannot be used as configured; the message says what to change."""


class MirrorMissingError(DataError):
    """A mirror is configured but does not hold the dataset."""


class HashMismatchError(DataError):
    """The data files differ from the task's pinned hashes."""


class HubError(DataError):
    """The Hugging Face hub could not be reached, or refused the request."""


# ---------------------------------------------------------------------------------------------
# Hashes


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def hash_folder(folder: Path) -> dict[str, str]:
    """{relative POSIX path: sha256} of every file under `folder` except hidden ones, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    hashes: dict[str, str] = {}
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root) / name
            relative = path.relative_to(folder)
            if _is_hidden(relative) or not path.is_file():
                continue
            hashes[relative.as_posix()] = file_sha256(path)
    return dict(sorted(hashes.items()))


def combined_sha256(file_hashes: Mapping[str, str]) -> str:
    """One hash over {path: sha256}: sha256 of `sha256sum`-style lines sorted by path."""
    lines = "".join(f"{digest}  {path}\n" for path, digest in sorted(file_hashes.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True)
class VerifiedData:
    """The folder a task's data is read from, what it holds, and how that compares with the pins."""

    repo: str | None
    revision: str | None
    config: str | None
    local_path: str
    source: str  # "path" (task.dataset_path), "mirror" or "hub"
    files: dict[str, str]  # {relative path: sha256}
    files_sha256: str  # combined_sha256(files)
    pinned: bool  # the task config pinned file hashes
    mismatch: bool = False
    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    # The commit the files are from, where known: the hub snapshot's, or the one `pull` wrote into the
    # folder's .harness-pin.json.
    resolved_revision: str | None = None

    @property
    def differing(self) -> tuple[str, ...]:
        return tuple(sorted((*self.changed, *self.missing, *self.extra)))

    def to_dict(self) -> dict[str, Any]:
        """For summary.json's `dataset.<task>` (keys chosen not to collide with the documents' sha256)."""
        return {
            "repo": self.repo,
            "revision": self.revision,
            "config": self.config,
            "local_path": self.local_path,
            "source": self.source,
            "files_sha256": self.files_sha256,
            "files": dict(self.files),
            "pinned": self.pinned,
            "mismatch": self.mismatch,
            "differing": {"changed": list(self.changed), "missing": list(self.missing), "extra": list(self.extra)},
            "resolved_revision": self.resolved_revision,
        }


def _listing(names: Sequence[str], describe=str) -> str:
    shown = ", ".join(describe(n) for n in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def verify(folder: Path, expected: Mapping[str, str] | None, allow_mismatch: bool = False, *,
           repo: str | None = None, revision: str | None = None, config: str | None = None,
           source: str = "path", task: str | None = None, resolved_revision: str | None = None) -> VerifiedData:
    """Hash `folder` and compare with the pinned {path: sha256}. No pins (None or empty): nothing to
    compare, the record says pinned=False. A changed, missing or extra file raises HashMismatchError
    naming them, unless allow_mismatch, which returns the record with mismatch=True instead.
    resolved_revision defaults to the revision in the folder's .harness-pin.json, if any."""
    folder = Path(folder).resolve()
    files = hash_folder(folder)
    if not files:
        raise DataError(f"{folder} holds no data files (dataset {repo or '?'})")
    expected = dict(expected or {})
    changed = tuple(p for p in files if p in expected and expected[p] != files[p])
    missing = tuple(p for p in sorted(expected) if p not in files)
    # An unpinned file beside pinned ones (a new shard a split's glob would pick up) is a mismatch;
    # elsewhere (the dataset card README.md, other subsets' folders) it is recorded, not refused, so
    # one set of pins serves the hub snapshot and a trimmed copy of it alike.
    pinned_dirs = {posixpath.dirname(p) for p in expected}
    extra = tuple(p for p in files if expected and p not in expected and posixpath.dirname(p) in pinned_dirs)
    mismatch = bool(changed or missing or extra)
    record = VerifiedData(
        repo=repo, revision=revision, config=config, local_path=str(folder), source=source, files=files,
        files_sha256=combined_sha256(files), pinned=bool(expected), mismatch=mismatch,
        changed=changed, missing=missing, extra=extra,
        resolved_revision=resolved_revision or (read_pin(folder) or {}).get("revision"),
    )
    if mismatch and not allow_mismatch:
        parts = []
        if changed:
            parts.append("changed: " + _listing(
                changed, lambda p: f"{p} (pinned {expected[p][:12]}…, found {files[p][:12]}…)"))
        if missing:
            parts.append("missing: " + _listing(missing))
        if extra:
            parts.append("not pinned: " + _listing(extra))
        raise HashMismatchError(
            f"dataset {repo or folder.name} in {folder} does not match its pinned hashes (task.dataset_sha256): "
            f"{'; '.join(parts)}. Restore the pinned files (python -m harness.data pull task={task or '<task>'}), "
            f"or if these files are meant, replace the pins with the output of `python -m harness.data hash {folder}`; "
            f"to run on them anyway set data.allow_hash_mismatch=true (the run records the mismatch)."
        )
    return record


def read_pin(folder: Path) -> dict[str, Any] | None:
    """The .harness-pin.json that `pull` wrote into a mirror folder, if any."""
    path = Path(folder) / PIN_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
