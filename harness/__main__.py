"""Entry point: `python -m harness model=<name> task=<name> [overrides]` (Hydra)."""

from __future__ import annotations

import errno
import sys

import hydra
from omegaconf import DictConfig

from harness.config import register_configs

register_configs()


_OS_ADVICE = {
    errno.EACCES: "it is not writable (or readable) for this user: fix its permissions or choose another place",
    errno.EPERM: "it is not writable (or readable) for this user: fix its permissions or choose another place",
    errno.EROFS: "it is on a read-only file system: choose a writable place",
    errno.ENOSPC: "the disk is full: free some space or choose another disk",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another disk",
    errno.ENOTDIR: "a file stands where a folder should be: choose another path",
    errno.EISDIR: "a folder stands where a file should be: choose another path",
}


def explain_os_error(exc: OSError, results_dir: str = "...") -> str:
    """A file-system failure as one line naming the path and the fix (results_dir=... for the run's files)."""
    where = f" at {exc.filename}" if exc.filename else ""
    advice = _OS_ADVICE.get(exc.errno or -1)
    if advice is None:
        return f"{type(exc).__name__}{where}: {exc.strerror or exc}"
    return (f"cannot use {exc.filename or 'a file'} ({exc.strerror}): {advice} (the run writes under results_dir={results_dir}; "
            f"choose another with results_dir=DIR).")


def _fail(message: str, code: int) -> None:
    print(f"[harness] error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from harness.config import ConfigError
    from harness.endpoints.base import EndpointError
    from harness.run import format_report, run
    from harness.sandbox import SandboxUnavailable

    try:
        result = run(cfg)
    except (EndpointError, ConfigError, FileExistsError, SandboxUnavailable) as exc:
        _fail(str(exc), 2)
    except OSError as exc:
        _fail(explain_os_error(exc, str(cfg.get("results_dir"))), 2)
    except KeyboardInterrupt:
        _fail("interrupted. Responses received so far are in the cache; re-run the same command to resume "
              "without paying for them again.", 130)
    else:
        print(format_report(result), flush=True)


def check_overrides(argv: list[str]) -> None:
    """Typo'd keys on the command line get our one-line message (exit 2) before Hydra's, which
    suggests `+` and exits 1."""
    from harness.config import ConfigError, raise_unknown, unknown_override_keys

    try:
        raise_unknown(unknown_override_keys(argv))
    except ConfigError as exc:
        _fail(str(exc), 2)


if __name__ == "__main__":
    check_overrides(sys.argv[1:])
    main()
