"""The claims report of a run: Markdown, HTML and a PNG of measured vs claimed with intervals and
what each check cost; and the CLI `python -m harness.claims` that prints it for a finished run."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.claims.display import claimed_text, quantity
from harness.claims.registry import CLAIMS_DIR, Claim, load_claims

REPORT_FILES = ("claims.md", "claims.html", "claims.png")
_COLUMNS = ("claim", "model (as named)", "benchmark", "claimed", "measured [95% CI]", "n", "verdict",
            "protocol mismatches", "cost of the check", "source")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def report_rows(verdicts: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for v in verdicts:
        measured = _fmt(v["measured"], 4 if v["kind"] == "price" else 1)
        if v["ci95"]:
            measured += f" [{_fmt(v['ci95'][0])}, {_fmt(v['ci95'][1])}]"
        if v.get("strict_value") is not None and v["strict_value"] != v["generous_value"]:
            measured += (f"; unscorable items wrong {_fmt(v['strict_value'])} ({v['strict_status']}), "
                         f"right {_fmt(v['generous_value'])} ({v['generous_status']})")
        mismatches = "; ".join(v["mismatches"]) or "none"
        if v["unknowns"]:
            mismatches += f" (claim does not state: {', '.join(v['unknowns'])})"
        rows.append((v["claim_id"], v["model_as_named"], v["benchmark"], str(v["claimed"]), measured,
                     _fmt(v["n"], 0) if v["n"] is not None else "—", v["status"], mismatches,
                     "—" if v["cost_usd"] is None else f"${v['cost_usd']:.4f}", v["source"]))
    return rows


_UNJUDGED_COLUMNS = ("claim", "model (as named)", "benchmark / quantity", "claimed", "status", "source")


def unjudged_claims(summary: dict[str, Any], folder: Path | None = None) -> list[Claim]:
    """The registry's claims about the run's model that no run judges (model facts, scores without a task,
    ratings), read from the registry the run used (its config.yaml `claims.dir`), to stand beside the verdicts."""
    config = folder / "config.yaml" if folder is not None else None
    claims_dir = None
    if config is not None and config.is_file():
        claims_dir = ((yaml.safe_load(config.read_text()) or {}).get("claims") or {}).get("dir")
    return not_judged_by_runs(load_claims(Path(claims_dir) if claims_dir else CLAIMS_DIR), summary.get("model"))


def not_judged_by_runs(claims: Sequence[Claim], model: str | None) -> list[Claim]:
    """The claims about `model` no run measures: model facts, scores without a task, ratings."""
    return [c for c in claims if c.model == model and c.no_run_status is not None]


def unjudged_rows(claims: Sequence[Claim]) -> list[tuple[str, ...]]:
    return [(c.id, c.model_as_named, quantity(c), claimed_text(c), str(c.no_run_status),
             f"{c.source.publication}, {c.source.date}") for c in claims]


def render_markdown(summary: dict[str, Any], unjudged: Sequence[Claim] = ()) -> str:
    """`unjudged`: the registry's claims about this model no run judges, listed after the verdicts."""
    verdicts = summary.get("claims") or []
    head = (f"# Claims checked by run {summary['run_id']}\n\nModel `{summary['model']}` "
            f"({summary['endpoint']['model_id']}), task `{summary['task']}`, "
            f"{len(verdicts)} claim(s) this run can speak to. Run cost ${summary['cost_usd']:.4f} at the price book's rates.\n\n")
    tail = ""
    if unjudged:
        tail = (f"\n## Not judged by any run\n\n{len(unjudged)} claim(s) in the registry about `{summary['model']}` that "
                f"no run measures (`python -m harness.claims list` shows every claim):\n\n" + _table(_UNJUDGED_COLUMNS,
                                                                                                  unjudged_rows(unjudged)))
    if not verdicts:
        return head + "No claim in the registry is about this model and benchmark.\n" + tail
    return head + _table(_COLUMNS, report_rows(verdicts)) + tail


def _table(columns: Sequence[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _html_table(columns: Sequence[str], rows: list[tuple[str, ...]]) -> str:
    cells = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def render_html(summary: dict[str, Any], png: bytes | None = None, unjudged: Sequence[Claim] = ()) -> str:
    """Self-contained (plot as a data URI, inline CSS): MLflow's artifact viewer shows the page on its
    own, where a relative claims.png does not resolve."""
    verdicts = summary.get("claims") or []
    img = (f"<img src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}' alt='measured vs claimed' "
           "style='max-width:100%'>" if png else "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Claims: {html.escape(summary['run_id'])}"
            f"</title><style>table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px}}</style>"
            f"</head><body><h1>Claims checked by run {html.escape(summary['run_id'])}</h1>"
            f"<p>Model {html.escape(summary['model'])}, task {html.escape(summary['task'])}.</p>"
            + (f"{_html_table(_COLUMNS, report_rows(verdicts))}{img}" if verdicts else
               "<p>No claim in the registry is about this model and benchmark "
               "(<code>python -m harness.claims list</code> shows them all).</p>")
            + (f"<h2>Not judged by any run</h2><p>{len(unjudged)} claim(s) in the registry about "
               f"{html.escape(summary['model'])} that no run measures.</p>"
               + _html_table(_UNJUDGED_COLUMNS, unjudged_rows(unjudged)) if unjudged else "")
            + "</body></html>")


_STATUS_COLORS = {"consistent": "tab:green", "below claim": "tab:red", "above claim": "tab:purple",
                  "underpowered": "tab:gray", "inconclusive": "tab:orange"}
_ROW_INCHES = 0.42  # fits a two-line tick label at 8 pt, so the labels of adjacent rows never touch


def claims_figure(summary: dict[str, Any]) -> Any:
    """Measured (95% interval) against claimed, one row per score claim; the verdict and the cost of
    the check in a column right of the data and the legend below the axis, so no label covers a
    marker. None when no score claim was measured (prices and speeds are not on a percent axis)."""
    scores = [v for v in summary.get("claims") or [] if v["kind"] == "score" and v["measured"] is not None]
    if not scores:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 1.6 + _ROW_INCHES * len(scores)), layout="constrained")
    beside = ax.get_yaxis_transform()  # x in axes fractions, y in rows: a column right of the data
    for i, v in enumerate(scores):
        lo, hi = v["ci95"]
        ax.errorbar(v["measured"], i, xerr=[[max(v["measured"] - lo, 0)], [max(hi - v["measured"], 0)]], fmt="o",
                    color="tab:blue", capsize=4, label="measured (95% CI)" if i == 0 else None)
        ax.plot(v["claimed"], i, "X", color="tab:red", markersize=8, label="claimed" if i == 0 else None)
        cost = "—" if v["cost_usd"] is None else f"${v['cost_usd']:.4f}"
        k = len(v["mismatches"])
        differences = f"  ·  {k} protocol difference{'s' if k > 1 else ''}" if k else ""
        ax.text(1.02, i, f"{v['status']}  ·  {cost}{differences}", transform=beside, va="center", fontsize=8,
                color=_STATUS_COLORS.get(v["status"], "black"))
    ax.text(1.02, -0.5, "verdict  ·  cost of the check", transform=beside, va="bottom", fontsize=8, weight="bold")
    ax.set_yticks(range(len(scores)), [f"{v['model_as_named']}\n{v['benchmark']}" for v in scores], fontsize=8)
    ax.set_ylim(len(scores) - 0.5, -0.5)  # the first claim on top, as in the table
    lo, hi = ax.get_xlim()
    ax.set_xlim(max(lo, -3), min(hi, 103))  # fitted to intervals and claims, within 0-100 plus room for a marker
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("score (%)")
    fig.suptitle(f"{summary['model']} on {summary['task']}: measured vs claimed\n"
                 f"run {summary['run_id']}, {scores[0]['n']} items", fontsize=10)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def render_plot(summary: dict[str, Any], path: Path) -> bool:
    """claims_figure written to `path`; False, and nothing written, when there is no score claim."""
    fig = claims_figure(summary)
    if fig is None:
        return False
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120, bbox_inches="tight")  # "tight" takes in the verdict column outside the axes
    plt.close(fig)
    return True


def write_report(summary: dict[str, Any], folder: Path, unjudged: Sequence[Claim] | None = None) -> list[Path]:
    """The PNG before the HTML that embeds it; a claims.png left by an earlier rendering is removed.
    `unjudged` defaults to unjudged_claims of the run's own registry."""
    unjudged = unjudged_claims(summary, folder) if unjudged is None else unjudged
    md, page, png = folder / "claims.md", folder / "claims.html", folder / "claims.png"
    md.write_text(render_markdown(summary, unjudged), encoding="utf-8")
    plotted = render_plot(summary, png)
    if not plotted:
        png.unlink(missing_ok=True)
    page.write_text(render_html(summary, png.read_bytes() if plotted else None, unjudged), encoding="utf-8")
    return [md, page] + ([png] if plotted else [])


def format_verdict_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    for v in summary.get("claims") or []:
        lines.append(f"  claim {v['claim_id']}: {v['status']} — {v['detail']}")
        lines += [f"    protocol mismatch: {m}" for m in v["mismatches"]]
    return lines
