"""Entry point: `python -m harness model=<name> task=<name> [overrides]` (Hydra)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from harness.config import register_configs

register_configs()


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
    except KeyboardInterrupt:
        _fail("interrupted. Responses received so far are in the cache; re-run the same command to resume "
              "without paying for them again.", 130)
    else:
        print(format_report(result), flush=True)


if __name__ == "__main__":
    main()
