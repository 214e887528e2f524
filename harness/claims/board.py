"""The claims board: every claim in the registry on one HTML page, with the latest verdict any run gave
it, grouped by source, and the claims of different sources about the same benchmark side by side.

One run's report (report.py) answers "what did this run say"; the board answers "where does each
published number stand", so it reads every finished run: local run folders and an MLflow experiment
(each run's folder is logged there under `run/`), a run found in both counting once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import itertools
import json
import re
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.claims.display import claimed_text, disagree, model_family
from harness.claims.registry import MODEL_FACT, NO_TASK, UNKNOWN, Claim
from harness.claims.report import report_rows
from harness.claims.verdicts import ABOVE, BELOW, CONSISTENT, INCONCLUSIVE, NOT_MEASURED, UNDERPOWERED, Verdict

NOT_CHECKED, NO_MODEL = "not checked yet", "no model config"  # NO_TASK, MODEL_FACT: registry.py
BOARD_FILE, BOARD_RUN_NAME, BOARD_TAG = "claims_board.html", "claims board", ("kind", "claims_board")
_STAMP = re.compile(r"^(\d{8}T\d{6}Z)")  # new_run_id() starts every run id with its UTC start time


def warn(message: str) -> None:
    print(f"[harness.claims] warning: {message}", file=sys.stderr)


@dataclass(frozen=True)
class Tracking:
    uri: str
    experiment: str

    @property
    def ui(self) -> str | None:
        """The MLflow UI's address, when the tracking URI is a server (a SQLite store has none)."""
        return self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) else None


@dataclass(frozen=True)
class CheckedRun:
    """A finished run that judged claims, wherever it was found."""

    run_id: str
    when: dt.datetime  # the run's start (from its id), else when its summary was written
    verdicts: tuple[Verdict, ...]
    model: str  # our model config
    task: str
    complete: bool = True
    folder: Path | None = None  # the local run folder
    mlflow_run_id: str | None = None
    mlflow_url: str | None = None  # its page in the MLflow UI


@dataclass(frozen=True)
class BoardRow:
    claim: Claim
    status: str  # the latest verdict's, or NOT_CHECKED / NO_TASK / NO_MODEL
    verdict: Verdict | None = None
    run: CheckedRun | None = None
    n_runs: int = 0  # how many runs judged this claim (the latest is shown)


@dataclass(frozen=True)
class Board:
    rows: tuple[BoardRow, ...]  # registry order, one per claim
    runs: tuple[CheckedRun, ...]
    read_from: tuple[str, ...]  # where runs were looked for, for the header
    orphans: tuple[str, ...] = ()  # claim ids judged by some run but no longer in the registry
    generated: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def counts(self) -> Counter[str]:
        return Counter(row.status for row in self.rows)

    def by_source(self) -> dict[tuple[str, str], list[BoardRow]]:
        """Rows per (publication, date), newest source first, undated last."""
        groups: dict[tuple[str, str], list[BoardRow]] = defaultdict(list)
        for row in self.rows:
            groups[(row.claim.source.publication, row.claim.source.date)].append(row)
        dated = sorted((k for k in groups if k[1] != UNKNOWN), key=lambda k: (k[1], k[0]), reverse=True)
        return {k: groups[k] for k in dated + sorted(k for k in groups if k[1] == UNKNOWN)}

    def contradictions(self) -> list[tuple[BoardRow, ...]]:
        """Claims on the same benchmark and metric about the same model family ("DeepSeek V4 (671B)" and
        "DeepSeek V4-Pro-Max") where two sources state different numbers (display.disagree)."""
        groups: dict[tuple[str, str, str | None, str], list[BoardRow]] = defaultdict(list)
        for row in self.rows:
            c = row.claim
            groups[(c.benchmark.lower(), c.metric, c.relative_to, model_family(c.model_as_named))].append(row)
        return [tuple(sorted(g, key=lambda r: (r.claim.source.date != UNKNOWN, r.claim.source.date, r.claim.value),
                             reverse=True))
                for g in groups.values() if any(disagree(a.claim, b.claim) for a, b in itertools.combinations(g, 2))]


def _verdict(d: dict[str, Any]) -> Verdict:
    """A verdict from summary.json; fields an older summary lacks are None."""
    fields = {f.name: d.get(f.name) for f in dataclasses.fields(Verdict)}
    fields.update(ci95=tuple(d["ci95"]) if d.get("ci95") else None, mismatches=tuple(d.get("mismatches") or ()),
                  unknowns=tuple(d.get("unknowns") or ()))
    return Verdict(**fields)


def checked_run(summary: dict[str, Any], written_at: float, **where: Any) -> CheckedRun:
    stamp = _STAMP.match(summary["run_id"])
    when = (dt.datetime.strptime(stamp.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC) if stamp
            else dt.datetime.fromtimestamp(written_at, dt.UTC))
    return CheckedRun(run_id=summary["run_id"], when=when, model=str(summary.get("model", "?")),
                      task=str(summary.get("task", "?")), complete=bool(summary.get("complete", True)),
                      verdicts=tuple(_verdict(v) for v in summary.get("claims") or ()),
                      **{"mlflow_run_id": summary.get("mlflow_run_id"), **where})


def local_runs(results_dir: Path) -> list[CheckedRun]:
    runs = []
    for path in sorted(Path(results_dir).glob("runs/*/summary.json")):
        try:
            runs.append(checked_run(json.loads(path.read_text()), path.stat().st_mtime, folder=path.parent.resolve()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warn(f"skipped {path}: {exc!r}")
    return runs


def _client(tracking: Tracking) -> Any:
    """An MLflow client that gives up on an unreachable server in seconds, not minutes of retries."""
    import os

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per summary.json is noise
    return MlflowClient(tracking_uri=tracking.uri)


def _search(client: Any, experiment_id: str, filter_string: str) -> Iterator[Any]:
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=500, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def mlflow_runs(tracking: Tracking, local: dict[str, CheckedRun]) -> list[CheckedRun]:
    """Finished MLflow runs that judged claims (run.py tags each verdict `claim.<id>`). A run also found
    locally (same run id) is not downloaded: the local one is returned with its MLflow link."""
    client = _client(tracking)
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        warn(f"no MLflow experiment {tracking.experiment!r} at {tracking.uri}")
        return []
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in _search(client, experiment.experiment_id, "attributes.status = 'FINISHED'"):
            if not any(key.startswith("claim.") for key in run.data.tags):
                continue
            info = run.info
            url = f"{tracking.ui}/#/experiments/{experiment.experiment_id}/runs/{info.run_id}" if tracking.ui else None
            run_id = run.data.tags.get("run_id") or info.run_name  # our run id: a tag, or (older runs) the name
            if run_id in local:
                found.append(dataclasses.replace(local[run_id], mlflow_run_id=info.run_id, mlflow_url=url))
                continue
            try:
                dst = Path(tmp) / info.run_id
                dst.mkdir()
                summary = json.loads(Path(client.download_artifacts(info.run_id, "run/summary.json", str(dst))).read_text())
            except Exception as exc:  # mlflow raises several types for a missing artifact
                warn(f"MLflow run {info.run_id} ({run_id}): no readable run/summary.json ({exc.__class__.__name__})")
                continue
            found.append(checked_run(summary, info.start_time / 1000, mlflow_run_id=info.run_id, mlflow_url=url))
    return found


def collect_runs(results_dir: Path, tracking: Tracking | None) -> tuple[list[CheckedRun], list[str]]:
    """Every finished run with verdicts, local and tracked, deduplicated by run id; and where it looked."""
    runs = {run.run_id: run for run in local_runs(results_dir)}
    read_from = [f"{Path(results_dir) / 'runs'} ({len(runs)} runs)"]
    if tracking is not None:
        try:
            tracked = mlflow_runs(tracking, runs)
        except Exception as exc:  # an unreachable server or a broken store must not cost the local board
            warn(f"could not read MLflow at {tracking.uri}: {exc.__class__.__name__}: {str(exc)[:300]}")
            read_from.append(f"MLflow {tracking.uri} (unreachable)")
        else:
            runs.update({run.run_id: run for run in tracked})
            read_from.append(f"MLflow {tracking.uri}, experiment {tracking.experiment} ({len(tracked)} runs)")
    return [r for r in runs.values() if r.verdicts], read_from


def _unchecked(claim: Claim) -> str:
    if claim.no_run_status is not None:
        return claim.no_run_status
    return NO_MODEL if claim.model is None else NOT_CHECKED


def build_board(claims: list[Claim], runs: list[CheckedRun], read_from: list[str] | None = None,
                book_verdicts: dict[str, Verdict] | None = None) -> Board:
    """One row per claim: the verdict of the most recent run that judged it, else (price claims) the price
    book's on the claim's date, else why there is none."""
    latest: dict[str, tuple[CheckedRun, Verdict]] = {}
    n_runs: Counter[str] = Counter()
    for run in sorted(runs, key=lambda r: (r.when, r.run_id)):
        for verdict in run.verdicts:
            latest[verdict.claim_id] = (run, verdict)
            n_runs[verdict.claim_id] += 1
    rows = []
    for claim in claims:
        run, verdict = latest.get(claim.id, (None, (book_verdicts or {}).get(claim.id)))
        rows.append(BoardRow(claim, verdict.status if verdict else _unchecked(claim), verdict, run, n_runs[claim.id]))
    known = {c.id for c in claims}
    return Board(tuple(rows), tuple(runs), tuple(read_from or ()), tuple(sorted(set(latest) - known)))


# --- the page ---------------------------------------------------------------------------------------
_STATUS_CLASS = {CONSISTENT: "ok", BELOW: "bad", ABOVE: "high", UNDERPOWERED: "weak", INCONCLUSIVE: "weak",
                 NOT_MEASURED: "none",
                 NOT_CHECKED: "todo", NO_TASK: "none", NO_MODEL: "none", MODEL_FACT: "none"}
_STATUS_MEANS = {
    CONSISTENT: "the run's 95% interval includes the claim and is narrow enough to have seen a gap",
    BELOW: "the run's 95% interval lies below the claim", ABOVE: "the run's 95% interval lies above the claim",
    UNDERPOWERED: "the interval includes the claim but is too wide to decide",
    INCONCLUSIVE: "the run cannot speak to it: unscorable items decide the verdict, or a blocking protocol mismatch",
    NOT_MEASURED: "the run could not measure it (e.g. a speed claim on a run that did not stream)",
    NOT_CHECKED: "a run of our model config and task would check it; none has yet",
    NO_TASK: "no task config can check this benchmark yet (a rating: none can, no task yields one)",
    MODEL_FACT: "a fact the source states about the model (size, context, training, dates): no run measures it",
    NO_MODEL: "no model config matches the model as the source named it, so no run is about it"}
_CSS = """
body{font:14px/1.45 "DejaVu Sans",system-ui,sans-serif;margin:24px 28px;color:#1b1b1b}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:30px 0 4px;padding-bottom:3px;border-bottom:2px solid #bbb}
h3{font-size:15px;margin:0 0 6px}a{color:#0b57d0}.muted{color:#5f5f5f;font-size:12.5px}
table{border-collapse:collapse;width:100%;margin:6px 0 8px;table-layout:fixed}td,th{border:1px solid #d4d4d4;padding:4px 6px;vertical-align:top;overflow-wrap:anywhere}
th{background:#eef0f3;text-align:left;font-size:12px;overflow-wrap:normal}tr:nth-child(even) td{background:#fafafa}
td{font-size:13px}td.num{text-align:right}.nw{white-space:nowrap}.id,code{font:11.5px "DejaVu Sans Mono",monospace;color:#444}
.st{display:inline-block;padding:1px 6px;font-size:12px;border-radius:10px;font-weight:bold;white-space:nowrap;border:1px solid}
.st-ok{background:#e2f3e5;color:#14532d;border-color:#5fb574}.st-bad{background:#fde2e2;color:#86181d;border-color:#d9676b}
.st-high{background:#fdecd8;color:#7a3b00;border-color:#dc9a4c}.st-weak{background:#fff5cc;color:#5b4600;border-color:#cfae32}
.st-todo{background:#e8eefb;color:#1d3f8f;border-color:#8aa5e0}.st-none{background:#f1f1f1;color:#555;border:1px dashed #999}
.counts .st{margin:2px 6px 2px 0}.group{border:1px solid #c9c9c9;border-radius:6px;padding:8px 12px;margin:10px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ddd;border-left:6px solid #6b7fa8;padding:6px 10px;min-width:230px}
.big{font-size:26px;font-weight:bold}.also{color:#86181d;font-size:12px}ul{margin:0;padding-left:16px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _wrap(text: str) -> str:
    """Escaped, with line-break chances after _ and - so ids and commands wrap between words."""
    return re.sub(r"([_\-])", r"\1<wbr>", _e(text))


def _badge(status: str, title: str = "") -> str:
    return (f"<span class='st st-{_STATUS_CLASS.get(status, 'none')}' title='{_e(title or _STATUS_MEANS.get(status, ''))}'>"
            f"{_e(status)}</span>")


def _run_cell(row: BoardRow) -> str:
    run, claim = row.run, row.claim
    if run is None:
        if row.verdict is not None:
            return f"<span class='muted'>{_e(row.verdict.detail)}</span>"
        if row.status != NOT_CHECKED:
            return "<span class='muted'>—</span>"
        # A price or speed claim is checked by any run of the model (speed: a streamed one); a score claim
        # by its task, at the effort it was stated at. Every word is safe to paste into a shell.
        words = [f"model={claim.model}", f"task={claim.task}" if claim.task else "task=gsm8k limit=20"]
        if claim.kind == "speed":
            words.append("model.stream=true")
        effort = claim.protocol.reasoning
        if claim.kind == "score" and effort not in (UNKNOWN, "off", "on"):
            words.append(f"model.generation.reasoning_effort={effort}")
        return (f"<span class='muted'>to check:</span> <code class='nw'>python -m harness</code> "
                + " ".join(f"<code>{_wrap(word)}</code>" for word in words))
    links = [f"<a href='{_e(run.folder.as_uri())}'>run folder</a>"] if run.folder else []
    if run.mlflow_url:
        links.append(f"<a href='{_e(run.mlflow_url)}'>MLflow</a>")
    elif run.mlflow_run_id and not run.folder:
        links.append(f"MLflow run {_e(run.mlflow_run_id)}")
    return (f"<div class='id'>{_wrap(run.run_id)}</div><div class='muted'>{_e(run.model)} · {_e(run.task)}</div>"
            + " · ".join(links))


def _protocol_cell(row: BoardRow) -> str:
    v, claim = row.verdict, row.claim
    unknowns = v.unknowns if v else tuple(k for k, x in dataclasses.asdict(claim.protocol).items()
                                          if x == UNKNOWN and claim.kind == "score")
    items = "".join(f"<li>{_e(m)}</li>" for m in v.mismatches) if v else ""
    text = f"<ul>{items}</ul>" if items else ("none" if v else "")
    if unknowns:
        text += f"<div class='muted'>not stated by the claim: {_e(', '.join(unknowns))}</div>"
    return text


def verdict_cells(v: Verdict | None) -> tuple[str, str, str]:
    """(measured [95% CI], n, cost) formatted as in a run's own claims report."""
    if v is None:
        return "—", "—", "—"
    _, _, _, _, measured, n, _, _, cost, _ = report_rows([v.to_dict()])[0]
    return measured, n, cost


def _measured(text: str) -> str:
    """The value, then its interval kept on one line."""
    value, _, ci = text.partition(" [")
    return _e(value) + (f" <span class='nw'>[{_e(ci)}</span>" if ci else "")


def _row_html(row: BoardRow, groups: dict[str, tuple[int, tuple[BoardRow, ...]]]) -> str:
    c, v = row.claim, row.verdict
    measured, n, cost = verdict_cells(v)
    i, group = groups.get(c.id, (0, ()))
    also = "".join((f"<div><a class='also' href='#grp-{i}' title='{_e(o.claim.source.publication)}'>"
                    f"≠ {_e(claimed_text(o.claim))}</a></div>")
                   for o in group if o.claim.value != c.value and o.claim.source != c.source)
    when = "—"
    if row.run is not None:
        when = row.run.when.strftime("<span class='nw'>%Y-%m-%d</span> %H:%M UTC")
        when += f"<div class='muted'>latest of {row.n_runs} runs</div>" if row.n_runs > 1 else ""
        when += "<div class='muted'>incomplete run</div>" if not row.run.complete else ""
    detail = v.detail if v else _STATUS_MEANS.get(row.status, "")
    cells = [f"<div class='id'>{_wrap(c.id)}</div>", f"<b>{_e(c.model_as_named)}</b><div class='muted'>our config: "
             f"{_e(c.model or 'none')}</div>", _e(c.benchmark), _e(c.metric.replace("_", " ")),
             f"<b>{_e(claimed_text(c))}</b>{also}", _badge(row.status, detail), _measured(measured), _e(n),
             _protocol_cell(row), _e(cost), when, _run_cell(row)]
    classes = ["", "", "", "", "num", "", "num", "num", "", "num", "", ""]
    tds = "".join(f"<td class='{k}'>{x}</td>" if k else f"<td>{x}</td>" for k, x in zip(classes, cells))
    return f"<tr id='claim-{_e(c.id)}' title='{_e(c.notes)}'>{tds}</tr>"


_HEAD = (("claim", 9), ("model (as named)", 9.5), ("benchmark", 7), ("metric", 5.5), ("claimed", 8.5),
         ("status", 9.5), ("measured [95% CI]", 9.5), ("n", 4), ("protocol mismatches", 14.5), ("cost of the check", 5.5),
         ("run date", 7.5), ("run", 10))  # (column, % of the width): a fixed layout keeps every source's table alike


def _card(row: BoardRow) -> str:
    c, v = row.claim, row.verdict
    measured = f" measured {_measured(verdict_cells(v)[0])}" if v is not None and v.measured is not None else ""
    return (f"<div class='card'><div class='big'>{_e(claimed_text(c))}</div><b>{_e(c.model_as_named)}</b>"
            f"<div>{_e(c.source.publication)}, {_e(c.source.date)}</div>"
            f"<div class='muted'>provenance: {_e(c.source.provenance)}</div>"
            f"<div>{_badge(row.status, v.detail if v else '')}{measured} <a href='#claim-{_e(c.id)}'>row</a></div></div>")


def _contradictions_html(groups: list[tuple[BoardRow, ...]]) -> str:
    if not groups:
        return "<p class='muted'>No two sources state different numbers for the same benchmark and model.</p>"
    parts = []
    for i, group in enumerate(groups):
        first, values = group[0].claim, [r.claim.value for r in group]
        family = min((re.sub(r"\s*\(.*?\)", "", r.claim.model_as_named) for r in group), key=len)
        percent = first.kind == "score" and first.unit == "percent"  # a fact's percent is a ratio, not points
        spread = f", {max(values) - min(values):.1f} points apart" if percent else ""
        parts.append(f"<div class='group' id='grp-{i}'><h3>{_e(first.benchmark)} ({_e(first.metric.replace('_', ' '))}),"
                     f" {_e(family)} models: {_e(' vs '.join(dict.fromkeys(claimed_text(r.claim) for r in group)))}{spread}</h3>"
                     f"<div class='cards'>{''.join(_card(r) for r in group)}</div></div>")
    return "".join(parts)


def render_board(board: Board) -> str:
    """The board as one self-contained page: inline CSS, no scripts, no external resources."""
    counts = board.counts()
    order = [CONSISTENT, BELOW, ABOVE, UNDERPOWERED, INCONCLUSIVE, NOT_MEASURED, NOT_CHECKED, NO_MODEL, NO_TASK, MODEL_FACT]
    badges = "".join(f"{_badge(s)}<b>{counts[s]}</b> &nbsp; " for s in order + sorted(set(counts) - set(order))
                     if counts[s])
    groups = board.contradictions()
    in_group = {r.claim.id: (i, g) for i, g in enumerate(groups) for r in g}
    sources = board.by_source()
    toc = " · ".join(f"<a href='#src-{i}'>{_e(p)} ({_e(d)})</a>" for i, (p, d) in enumerate(sources))
    head = "".join(f"<col style='width:{w}%'>" for _, w in _HEAD) + "<tr>" + "".join(f"<th>{_e(h)}</th>" for h, _ in _HEAD)
    tables = []
    for i, ((publication, date), rows) in enumerate(sources.items()):
        files = ", ".join(sorted({r.claim.file for r in rows}))
        urls = sorted({r.claim.source.url for r in rows} - {UNKNOWN})
        link = "".join(f" · <a href='{_e(u)}'>source</a>" for u in urls)
        tables.append(f"<h2 id='src-{i}'>{_e(publication)} <span class='muted'>— {_e(date)}</span></h2>"
                      f"<div class='muted'>{len(rows)} claims · conf/claims/{_e(files)}{link}</div>"
                      f"<table>{head}</tr>{''.join(_row_html(r, in_group) for r in rows)}</table>")
    orphans = (f"<p class='muted'>Runs also judged claims no longer in the registry: {_e(', '.join(board.orphans))}</p>"
               if board.orphans else "")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Claims board</title>"
            f"<style>{_CSS}</style></head><body><h1>Claims board</h1>"
            f"<div class='muted'>{len(board.rows)} claims from {len(sources)} sources · latest verdict of "
            f"{len(board.runs)} runs with verdicts · generated {board.generated:%Y-%m-%d %H:%M UTC} · read: "
            f"{_e('; '.join(board.read_from))}</div><p class='counts'>{badges}</p>"
            f"<div class='muted'>Sources: {toc}</div>{orphans}"
            f"<h2>Same benchmark, different claims</h2>{_contradictions_html(groups)}{''.join(tables)}"
            f"<p class='muted'>Hover a status for the verdict's detail, a row for the claim's notes.</p></body></html>")


def log_board(tracking: Tracking, page: Path, board: Board) -> str | None:
    """The page as an artifact of the experiment's one "claims board" run (created the first time),
    with the counts per status as metrics; the run id, or None without the experiment."""
    client = _client(tracking)
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        warn(f"no MLflow experiment {tracking.experiment!r} at {tracking.uri}: the board is not logged")
        return None
    key, value = BOARD_TAG
    found = next(_search(client, experiment.experiment_id, f"tags.{key} = '{value}'"), None)
    run_id = found.info.run_id if found else client.create_run(
        experiment.experiment_id, run_name=BOARD_RUN_NAME, tags={key: value}).info.run_id
    client.log_artifact(run_id, str(page))
    for status, count in board.counts().items():
        client.log_metric(run_id, "claims." + re.sub(r"\W+", "_", status).strip("_"), count)  # MLflow: no "()"
    client.log_metric(run_id, "runs_with_verdicts", len(board.runs))
    if found is None:
        client.set_terminated(run_id)
    return run_id
