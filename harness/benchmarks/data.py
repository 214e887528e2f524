"""Where a task's dataset files come from, pinned and verified.

A task's data is read from one local folder in the hub's file layout (README.md whose `configs:`
block names the data files of each split, plus those files). That folder is, in this order:

1. `task.dataset_path`: an explicit copy (the embedded ones under `data/`);
2. the mirror: `<DIR>/<dataset_repo>/`, where DIR is `data.mirror` from the config or else the
   environment variable HARNESS_DATA_MIRROR (the config wins). With a mirror the network is never
   touched; a dataset missing from it is an error naming the expected folder and the pull command;
3. the hub: a snapshot of `dataset_repo` at `dataset_revision` in the Hugging Face cache.

Pins (task config): `dataset_repo` (hub repo id), `dataset_revision` (a commit sha), optionally
`dataset_config` (the subset name, recorded) and `dataset_sha256` ({relative path: sha256}).

What is hashed: every regular file under the folder, named by its path relative to the folder with
'/' separators, except any path with a component starting with '.' (`.gitattributes`, `.git/`, the
`.cache/huggingface/` that snapshot_download writes, our `.harness-pin.json`). README.md is hashed:
its `configs:` block decides which files make which split, so editing it changes what is evaluated
(a copy whose README prose differs therefore has its own pins). The combined hash is the sha256 of
the lines "<sha256>  <path>\\n" sorted by path, i.e. of `sha256sum`'s output, so a shell can check it:

    cd DIR && find -L . -type f ! -path '*/.*' | sed 's|^\\./||' | LC_ALL=C sort \\
        | xargs -d '\\n' sha256sum | sha256sum

It does not depend on where the folder is or in which order the files are listed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from harness.benchmarks.pins import (PIN_FILE, DataError, HashMismatchError, HubError, MirrorMissingError,
                                     VerifiedData, _listing, combined_sha256, hash_folder, read_pin, verify)

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIRROR_ENV = "HARNESS_DATA_MIRROR"
HUB_TIMEOUT_S = 15.0

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


# ---------------------------------------------------------------------------------------------
# Where the folder is


def check_repo_id(repo: str) -> str:
    if not isinstance(repo, str) or not _REPO_ID.match(repo) or ".." in repo:
        raise DataError(f"dataset repo id {repo!r} is not of the form 'owner/name' (task.dataset_repo)")
    return repo


def mirror_root(config_value: str | None) -> tuple[str, str] | None:
    """(mirror DIR, where it was set) from the config value, else the environment, else None."""
    if config_value:
        return str(config_value), "data.mirror"
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV], MIRROR_ENV
    return None


def resolve_local_copy(repo: str, mirror: str | None, *, task: str | None = None) -> Path | None:
    """DIR/<repo> when a mirror is configured (config value, else HARNESS_DATA_MIRROR), else None
    (meaning: use the hub). A configured mirror without the dataset is an error."""
    root = mirror_root(mirror)
    if root is None:
        return None
    directory, origin = root
    folder = Path(directory).expanduser().resolve() / check_repo_id(repo)
    if not folder.is_dir():
        raise MirrorMissingError(
            f"dataset {repo} is not in the data mirror ({origin}={directory}): expected the folder {folder} "
            f"in the hub's layout (README.md with configs + data files). Fetch it where the hub is reachable with "
            f"`python -m harness.data pull task={task or '<task>'} data.mirror=<DIR>` and copy <DIR>/{repo} "
            f"to {folder}."
        )
    return folder


def resolve_dataset_path(path: str | Path) -> Path:
    """A relative task.dataset_path is tried against the working directory, then the project root
    (where the embedded copies live) -- the rule harness.benchmarks.lm_tasks uses."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and not candidate.exists():
        candidate = PROJECT_ROOT / candidate
    return candidate.resolve()


def _same_revision(configured: str, pulled: str, requested: str | None) -> bool:
    """Whether a folder pulled at commit `pulled` (asked for as `requested`) is the configured revision.
    A full or abbreviated sha must match; a branch or tag name cannot be checked offline (true)."""
    if configured == requested:
        return True
    if re.fullmatch(r"[0-9a-f]{7,40}", configured):
        return pulled.startswith(configured)
    return True


def prepare_dataset(*, repo: str | None, revision: str | None = None, dataset_path: str | Path | None = None,
                    mirror: str | None = None, expected: Mapping[str, str] | None = None,
                    allow_mismatch: bool = False, config: str | None = None,
                    task: str | None = None) -> VerifiedData:
    """The verified local folder for one task: task.dataset_path, else the mirror, else a hub snapshot."""
    commit = None
    if dataset_path:
        folder, source = resolve_dataset_path(dataset_path), "path"
        if not folder.is_dir():
            raise DataError(f"task.dataset_path={dataset_path} is not a folder; point it at a copy of the dataset "
                            f"in the hub's file layout (README.md with configs, plus the data files)")
    elif repo and (local := resolve_local_copy(repo, mirror, task=task)) is not None:
        folder, source = local, "mirror"
    elif repo:
        (folder, commit), source = hub_snapshot(repo, revision, task=task), "hub"
    else:
        raise DataError(f"task {task or '?'} has neither task.dataset_path nor task.dataset_repo")
    record = verify(folder, expected, allow_mismatch, repo=repo, revision=revision, config=config,
                    source=source, task=task, resolved_revision=commit)
    pin = read_pin(folder) or {}
    pulled = pin.get("revision")
    if revision and pulled and not _same_revision(revision, pulled, pin.get("requested_revision")):
        message = (f"{folder} was pulled at revision {pulled} ({PIN_FILE}) but the task pins "
                   f"dataset_revision={revision}")
        if record.pinned or allow_mismatch:  # the hashes decide; the pin file is informative
            log.warning("%s", message)
        else:
            raise HashMismatchError(f"{message}, and the task pins no file hashes to settle it. Pull the pinned "
                                    f"revision again, or set data.allow_hash_mismatch=true.")
    return record


# ---------------------------------------------------------------------------------------------
# The hub


def _hub_error(exc: BaseException, repo: str, revision: str | None, task: str | None = None) -> HubError | None:
    """A one-line HubError for hub and network failures; None for anything else."""
    from huggingface_hub import constants
    from huggingface_hub import errors as hf

    what = f"dataset {repo} at revision {revision or 'main'}"
    endpoint = constants.ENDPOINT
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    fallback = (f"Pull it where the hub is reachable (python -m harness.data pull task={task or '<task>'} "
                f"data.mirror=<DIR>), copy <DIR> here and set data.mirror=<DIR> (or {MIRROR_ENV}=<DIR>).")
    if isinstance(exc, hf.OfflineModeIsEnabled) or (
            isinstance(exc, hf.LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE):
        return HubError(f"cannot fetch {what}: the Hugging Face hub is unreachable: offline mode is on "
                        f"(HF_HUB_OFFLINE=1). {fallback}")
    if isinstance(exc, hf.GatedRepoError):
        return HubError(f"cannot fetch {what}: the hub ({endpoint}) refused access to this gated dataset; accept "
                        f"its terms on the hub and set HF_TOKEN")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return HubError(f"cannot fetch {what}: the hub ({endpoint}) has no such dataset, or it is private "
                        f"(set HF_TOKEN) -- check task.dataset_repo")
    if isinstance(exc, hf.RevisionNotFoundError):
        return HubError(f"cannot fetch {what}: the hub has no revision {revision} of {repo} "
                        f"-- check task.dataset_revision")
    if isinstance(exc, hf.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return HubError(f"cannot fetch {what}: the hub ({endpoint}) refused the request with HTTP {status}: "
                        f"{detail}")
    module = type(exc).__module__.split(".")[0]
    if isinstance(exc, (hf.LocalEntryNotFoundError, ConnectionError, TimeoutError)) or module in (
            "httpx", "httpx2", "httpcore", "requests", "urllib3"):
        return HubError(f"cannot fetch {what}: the Hugging Face hub ({endpoint}) is unreachable from this "
                        f"machine ({type(exc).__name__}: {detail}). {fallback}")
    return None


def _resolve_revision(repo: str, revision: str | None):
    """The hub's DatasetInfo at `revision` (its .sha is the commit). Fails fast when the hub is unreachable;
    snapshot_download alone would quietly return whatever an existing local folder holds."""
    from huggingface_hub import HfApi

    return HfApi().dataset_info(repo, revision=revision, timeout=HUB_TIMEOUT_S)


def hub_snapshot(repo: str, revision: str | None, allow_patterns: list[str] | None = None, *,
                 task: str | None = None) -> tuple[Path, str]:
    """(folder, commit sha) of a snapshot of the dataset repo in the Hugging Face cache (read-only use:
    hash it, load from it)."""
    from huggingface_hub import snapshot_download

    check_repo_id(repo)
    try:
        sha = _resolve_revision(repo, revision).sha
        folder = snapshot_download(repo_id=repo, repo_type="dataset", revision=sha, allow_patterns=allow_patterns)
        return Path(folder), sha
    except Exception as exc:
        error = _hub_error(exc, repo, revision, task)
        if error is None:
            raise
        raise error from None


def pull(repo: str, revision: str | None, mirror_dir: Path, allow_patterns: list[str] | None = None, *,
         task: str | None = None) -> Path:
    """Download the dataset repo at `revision` into mirror_dir/<repo> (hub layout) and write
    mirror_dir/<repo>/.harness-pin.json with the resolved commit and the file hashes."""
    from huggingface_hub import __version__ as hub_version
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.utils import filter_repo_objects

    target = Path(mirror_dir).expanduser().resolve() / check_repo_id(repo)
    try:
        info = _resolve_revision(repo, revision)
        snapshot_download(repo_id=repo, repo_type="dataset", revision=info.sha, local_dir=target,
                          allow_patterns=allow_patterns)
    except Exception as exc:
        error = _hub_error(exc, repo, revision, task)
        if error is None:
            raise
        raise error from None
    files = hash_folder(target)
    pin = {
        "repo": repo,
        "revision": info.sha,
        "requested_revision": revision,
        "allow_patterns": allow_patterns,
        "endpoint": constants.ENDPOINT,
        "pulled_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "huggingface_hub": hub_version,
        "files_sha256": combined_sha256(files),
        "files": files,
    }
    (target / PIN_FILE).write_text(json.dumps(pin, indent=2) + "\n")
    if info.siblings is not None:
        in_repo = set(filter_repo_objects([s.rfilename for s in info.siblings], allow_patterns=allow_patterns))
        stale = [p for p in files if p not in in_repo]
        if stale:
            raise DataError(f"{target} holds files that are not in {repo} at {info.sha}"
                            f"{' (with these --include patterns)' if allow_patterns else ''}: {_listing(stale)}. "
                            f"They would be hashed (and read, if a config's data_files match them): delete them.")
    return target
