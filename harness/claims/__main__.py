"""`python -m harness.claims [RUN_DIR | list]`: print and write a finished run's claims report (and log it
to its MLflow run), or list the registry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.claims.report import render_markdown, write_report


def _latest_run(results_dir: Path) -> Path:
    finished = sorted((p.parent for p in results_dir.glob("runs/*/summary.json")), key=lambda p: p.stat().st_mtime)
    if not finished:
        raise SystemExit(f"[harness.claims] error: no finished run under {results_dir}/runs; run python -m harness first")
    return finished[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.claims",
                                     description="Print and write the claims report of a finished run, "
                                                 "or list the registry.")
    parser.add_argument("run", nargs="?", help="a run folder (default: the latest under --results-dir), or 'list'")
    parser.add_argument("--results-dir", default="results")
    args = parser.parse_args(argv)
    if args.run == "list":
        from harness.claims.registry import load_claims

        for c in load_claims():
            print(f"{c.id}: {c.model_as_named} {c.benchmark} {c.metric} = {c.value} {c.unit} "
                  f"[{c.source.publication}, {c.source.date}]" + ("" if c.checkable else "  (no task)"))
        return 0
    folder = Path(args.run) if args.run else _latest_run(Path(args.results_dir))
    summary = json.loads((folder / "summary.json").read_text())
    written = write_report(summary, folder)
    print(render_markdown(summary))
    print("written: " + ", ".join(str(p) for p in written))
    if summary.get("mlflow_run_id"):
        from harness.records.tracking import log_files_to_run

        log_files_to_run(folder, summary["mlflow_run_id"], written, "claims")
        print(f"logged to MLflow run {summary['mlflow_run_id']} (artifacts/claims)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
