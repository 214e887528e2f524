"""`python -m harness.claims [RUN_DIR | list | board]`: print and write a finished run's claims report (and
log it to its MLflow run), list the registry, or build the claims board of every run."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.claims.report import render_markdown, unjudged_claims, write_report


def _latest_run(results_dir: Path) -> Path:
    finished = sorted((p.parent for p in results_dir.glob("runs/*/summary.json")), key=lambda p: p.stat().st_mtime)
    if not finished:
        raise SystemExit(f"[harness.claims] error: no finished run under {results_dir}/runs; run python -m harness first")
    return finished[-1]


def book_verdicts(claims: list) -> dict:
    """Price claims need no run: each is judged against the price book on its own date."""
    from harness.claims.verdicts import price_verdict
    from harness.spend.price_book import load_book
    from harness.spend.price_claims import registry_price_matches

    matches = registry_price_matches(claims, load_book())
    return {c.id: price_verdict(c, matches[c.id], note="the price book on the claim's date")
            for c in claims if c.id in matches}


def board_main(argv: list[str]) -> int:
    """`board`: the latest verdict of every claim over local and tracked runs, as one HTML page."""
    from harness.claims.board import BOARD_FILE, Tracking, build_board, collect_runs, log_board, render_board, warn
    from harness.claims.registry import CLAIMS_DIR, load_claims
    from harness.config import ConfigError

    parser = argparse.ArgumentParser(prog="python -m harness.claims board",
                                     description="One HTML page with every claim in the registry and the latest "
                                                 "verdict any run (local or in MLflow) gave it.")
    parser.add_argument("--results-dir", default="results", help="holds runs/*/summary.json (default: results)")
    parser.add_argument("--tracking-uri", help="an MLflow tracking URI to read runs from and log the board to "
                                               "(default: sqlite:///<results-dir>/mlflow.db when it exists)")
    parser.add_argument("--experiment", default="harness")
    parser.add_argument("--claims-dir", default=str(CLAIMS_DIR), help="the registry (default: conf/claims)")
    parser.add_argument("--out", help=f"the page (default: <results-dir>/{BOARD_FILE})")
    args = parser.parse_args(argv)
    results_dir, claims_dir = Path(args.results_dir), Path(args.claims_dir)
    try:
        claims = load_claims(claims_dir)
    except ConfigError as exc:
        raise SystemExit(f"[harness.claims] error: the claims registry is invalid: {exc}") from None
    if not claims:
        raise SystemExit(f"[harness.claims] error: no claims registry: no claim in {claims_dir}/*.yaml")
    if not results_dir.is_dir() and not args.tracking_uri:
        warn(f"no results folder at {results_dir}: no run is read, every claim shows as unchecked. If your runs "
             f"are elsewhere, pass --results-dir DIR (their results_dir) or --tracking-uri URI.")
    store = results_dir / "mlflow.db"
    uri = args.tracking_uri or (f"sqlite:///{store.resolve()}" if store.exists() else None)
    tracking = Tracking(uri, args.experiment) if uri else None
    runs, read_from = collect_runs(results_dir, tracking)
    board = build_board(claims, runs, read_from, book_verdicts(claims))
    out = Path(args.out) if args.out else results_dir / BOARD_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_board(board), encoding="utf-8")
    counts = ", ".join(f"{n} {status}" for status, n in board.counts().most_common())
    print(f"claims board: {len(claims)} claims ({counts}) from {len(runs)} runs with verdicts")
    print(f"written: {out}")
    if tracking is not None:
        try:
            run_id = log_board(tracking, out, board)
        except Exception as exc:  # the page is written; an unreachable server only costs the upload
            warn(f"the board was not logged to MLflow at {tracking.uri}: {exc.__class__.__name__}: {str(exc)[:300]}")
        else:
            if run_id:
                print(f"logged to MLflow run {run_id} ('claims board', experiment {tracking.experiment})")
    return 0


def list_main(claims_dir: Path | None) -> int:
    """`list`: every claim, one line each, grouped by source, with what checks it or why nothing does."""
    from harness.claims.display import registry_lines
    from harness.claims.registry import CLAIMS_DIR, load_claims
    from harness.config import ConfigError

    try:
        claims = load_claims(claims_dir or CLAIMS_DIR)
    except ConfigError as exc:
        raise SystemExit(f"[harness.claims] error: the claims registry is invalid: {exc}") from None
    try:
        print("\n".join(registry_lines(claims)), flush=True)
    except BrokenPipeError:  # `... list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["board"]:
        return board_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m harness.claims",
                                     description="Print and write the claims report of a finished run, "
                                                 "list the registry, or build the claims board.")
    parser.add_argument("run", nargs="?", help="a run folder (default: the latest under --results-dir), 'list', "
                                               "or 'board' (see board --help)")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--claims-dir", help="the registry for 'list' (default: conf/claims)")
    args = parser.parse_args(argv)
    if args.run == "list":
        return list_main(Path(args.claims_dir) if args.claims_dir else None)
    folder = Path(args.run) if args.run else _latest_run(Path(args.results_dir))
    if not (folder / "summary.json").is_file():
        print(f"[harness.claims] error: {folder} is not a finished run (no summary.json there: the run was "
              f"interrupted or failed, or the path is wrong); pass a folder under <results_dir>/runs/ that has one.",
              file=sys.stderr)
        return 2
    summary = json.loads((folder / "summary.json").read_text())
    unjudged = unjudged_claims(summary, folder)
    written = write_report(summary, folder, unjudged)
    print(render_markdown(summary, unjudged))
    print("written: " + ", ".join(str(p) for p in written))
    if summary.get("mlflow_run_id"):
        from harness.records.tracking import log_files_to_run

        log_files_to_run(folder, summary["mlflow_run_id"], written, "claims")
        print(f"logged to MLflow run {summary['mlflow_run_id']} (artifacts/claims)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
