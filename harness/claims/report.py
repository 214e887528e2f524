"""The claims report of a run: Markdown, HTML and a PNG of measured vs claimed with intervals and
what each check cost; and the CLI `python -m harness.claims` that prints it for a finished run."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

REPORT_FILES = ("claims.md", "claims.html", "claims.png")
_COLUMNS = ("claim", "model (as named)", "benchmark", "claimed", "measured [95% CI]", "n", "verdict",
            "protocol mismatches", "cost of the check", "source")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _rows(verdicts: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for v in verdicts:
        measured = _fmt(v["measured"], 4 if v["kind"] == "price" else 1)
        if v["ci95"]:
            measured += f" [{_fmt(v['ci95'][0])}, {_fmt(v['ci95'][1])}]"
        mismatches = "; ".join(v["mismatches"]) or "none"
        if v["unknowns"]:
            mismatches += f" (claim does not state: {', '.join(v['unknowns'])})"
        rows.append((v["claim_id"], v["model_as_named"], v["benchmark"], str(v["claimed"]), measured,
                     _fmt(v["n"], 0) if v["n"] is not None else "—", v["status"], mismatches,
                     "—" if v["cost_usd"] is None else f"${v['cost_usd']:.4f}", v["source"]))
    return rows


def render_markdown(summary: dict[str, Any]) -> str:
    verdicts = summary.get("claims") or []
    head = (f"# Claims checked by run {summary['run_id']}\n\nModel `{summary['model']}` "
            f"({summary['endpoint']['model_id']}), task `{summary['task']}`, "
            f"{len(verdicts)} claim(s) this run can speak to. Run cost ${summary['cost_usd']:.4f} at list price.\n\n")
    if not verdicts:
        return head + "No claim in the registry is about this model and benchmark.\n"
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _rows(verdicts)]
    return head + "\n".join(lines) + "\n"


def render_html(summary: dict[str, Any]) -> str:
    verdicts = summary.get("claims") or []
    cells = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in _rows(verdicts))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Claims: {html.escape(summary['run_id'])}"
            f"</title><style>table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px}}</style>"
            f"</head><body><h1>Claims checked by run {html.escape(summary['run_id'])}</h1>"
            f"<p>Model {html.escape(summary['model'])}, task {html.escape(summary['task'])}.</p>"
            f"<table><tr>{cells}</tr>{body}</table><img src='claims.png' alt='measured vs claimed'></body></html>")


def render_plot(summary: dict[str, Any], path: Path) -> bool:
    """Measured (with its 95% interval) against claimed, one row per score claim; False if none."""
    scores = [v for v in summary.get("claims") or [] if v["kind"] == "score" and v["measured"] is not None]
    if not scores:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(scores)))
    for i, v in enumerate(scores):
        lo, hi = v["ci95"]
        ax.errorbar(v["measured"], i, xerr=[[v["measured"] - lo], [hi - v["measured"]]], fmt="o", color="tab:blue",
                    capsize=4, label="measured (95% CI)" if i == 0 else None)
        ax.plot(v["claimed"], i, "x", color="tab:red", markersize=10, label="claimed" if i == 0 else None)
        ax.annotate(f"{v['status']}, ${v['cost_usd']:.4f}", (max(hi, v["claimed"]), i), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(range(len(scores)), [f"{v['model_as_named']}\n{v['benchmark']}" for v in scores], fontsize=8)
    ax.set_xlim(0, 115)
    ax.set_xlabel("score (%)")
    ax.set_title(f"Measured vs claimed — run {summary['run_id']}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(summary: dict[str, Any], folder: Path) -> list[Path]:
    written = [folder / "claims.md", folder / "claims.html"]
    written[0].write_text(render_markdown(summary), encoding="utf-8")
    written[1].write_text(render_html(summary), encoding="utf-8")
    if render_plot(summary, folder / "claims.png"):
        written.append(folder / "claims.png")
    return written


def format_verdict_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    for v in summary.get("claims") or []:
        lines.append(f"  claim {v['claim_id']}: {v['status']} — {v['detail']}")
        lines += [f"    protocol mismatch: {m}" for m in v["mismatches"]]
    return lines
