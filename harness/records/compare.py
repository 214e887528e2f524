"""Run against baseline: per-task score deltas with a paired test on the items both runs scored,
token / cost / failure deltas, and drift alarms (served model id, system fingerprint, pricing,
dataset hashes) that fire even when scores hold.

    python -m harness.compare [CURRENT_RUN_DIR] [--baseline BASELINE_RUN_DIR | --baseline previous]

Exit codes (for CI gates): 0 no regression, 1 regression (a significant drop beyond the minimum
effect), 2 could not compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scipy import stats as scipy_stats

from harness.common.stats import paired_bootstrap_p
from harness.records.tracking import log_files_to_run, tracking_uri_of

EXIT_OK, EXIT_REGRESSION, EXIT_CANNOT_COMPARE = 0, 1, 2


class CannotCompare(Exception):
    """The two runs cannot be compared; the message says why."""


@dataclass(frozen=True)
class RunRecords:
    folder: Path
    summary: dict[str, Any]
    scores: dict[str, dict[str, float]]  # task -> doc key -> headline score
    fingerprints: frozenset[str]  # system_fingerprint values seen in the samples

    @classmethod
    def load(cls, folder: Path) -> "RunRecords":
        summary_path, samples_path = folder / "summary.json", folder / "samples.jsonl"
        if not summary_path.is_file() or not samples_path.is_file():
            raise CannotCompare(f"{folder} is not a finished run (no summary.json / samples.jsonl)")
        scores: dict[str, dict[str, float]] = {}
        fingerprints = set()
        for line in samples_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                scores.setdefault(row["task"], {})[row.get("doc_key") or str(row["doc_id"])] = float(row["score"])
                if row.get("system_fingerprint"):
                    fingerprints.add(row["system_fingerprint"])
        summary = json.loads(summary_path.read_text())
        for group, entry in summary["tasks"].items():  # a group (MMLU-Pro) pools its categories' items
            if entry.get("subtasks"):
                scores[group] = {k: v for sub in entry["subtasks"] for k, v in scores.get(sub, {}).items()}
        return cls(folder, summary, scores, frozenset(fingerprints))


@dataclass(frozen=True)
class PairedTest:
    """A paired test on shared items: exact McNemar for 0/1 scores, a paired bootstrap otherwise
    (pass@k and other per-item means)."""

    method: str
    n_shared: int
    current_mean: float
    baseline_mean: float
    delta: float  # current - baseline, on the shared items
    only_current_right: int | None  # McNemar's discordant pairs
    only_baseline_right: int | None
    p_value: float


def paired_test(current: dict[str, float], baseline: dict[str, float]) -> PairedTest:
    shared = sorted(set(current) & set(baseline))
    if not shared:
        raise CannotCompare("the runs share no scored item (different tasks, data or limits?)")
    a = [current[k] for k in shared]
    b = [baseline[k] for k in shared]
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    if all(x in (0.0, 1.0) for x in a + b):
        up = sum(1 for x, y in zip(a, b) if x > y)
        down = sum(1 for x, y in zip(a, b) if x < y)
        p = scipy_stats.binomtest(up, up + down, 0.5).pvalue if up + down else 1.0
        return PairedTest("exact McNemar", len(shared), mean_a, mean_b, mean_a - mean_b, up, down, float(p))
    p = paired_bootstrap_p([x - y for x, y in zip(a, b)])
    return PairedTest("paired bootstrap", len(shared), mean_a, mean_b, mean_a - mean_b, None, None, p)


@dataclass(frozen=True)
class TaskComparison:
    task: str
    test: PairedTest
    regression: bool
    input_tokens_delta: int
    output_tokens_delta: int
    cost_usd_delta: float
    n_truncated_delta: int
    n_extraction_failed_delta: int


@dataclass(frozen=True)
class Drift:
    what: str
    baseline: Any
    current: Any


@dataclass(frozen=True)
class Comparison:
    current: str
    baseline: str
    tasks: tuple[TaskComparison, ...]
    drift: tuple[Drift, ...]
    alpha: float
    min_effect: float

    @property
    def regressed(self) -> bool:
        return any(t.regression for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"regressed": self.regressed}


def drift_between(current: RunRecords, baseline: RunRecords) -> list[Drift]:
    """What changed under the same config name: a change is reported even when scores hold."""
    cs, bs = current.summary, baseline.summary
    checks = [
        ("served model id", bs["endpoint"].get("served_model"), cs["endpoint"].get("served_model")),
        ("system_fingerprint", sorted(baseline.fingerprints), sorted(current.fingerprints)),
        ("pricing", bs.get("pricing"), cs.get("pricing")),
    ]
    for task in sorted(set(cs.get("dataset", {})) & set(bs.get("dataset", {}))):
        for key in ("sha256", "files_sha256", "revision"):
            checks.append((f"dataset {task} {key}", bs["dataset"][task].get(key), cs["dataset"][task].get(key)))
    return [Drift(what, before, after) for what, before, after in checks if before != after]


def compare_runs(current: RunRecords, baseline: RunRecords, alpha: float = 0.05,
                 min_effect: float = 0.01) -> Comparison:
    """A regression: a drop of more than `min_effect` (a fraction) that the paired test finds
    significant at `alpha`."""
    shared_tasks = sorted(set(current.scores) & set(baseline.scores))
    if not shared_tasks:
        raise CannotCompare(f"no task in common: {sorted(current.scores)} vs {sorted(baseline.scores)}")
    tasks = []
    for task in shared_tasks:
        test = paired_test(current.scores[task], baseline.scores[task])
        c, b = current.summary["tasks"].get(task, {}), baseline.summary["tasks"].get(task, {})
        cu, bu = c.get("usage", {}), b.get("usage", {})
        tasks.append(TaskComparison(
            task=task, test=test, regression=test.delta < -min_effect and test.p_value < alpha,
            input_tokens_delta=cu.get("input_tokens", 0) - bu.get("input_tokens", 0),
            output_tokens_delta=cu.get("output_tokens", 0) - bu.get("output_tokens", 0),
            cost_usd_delta=c.get("cost_usd", 0.0) - b.get("cost_usd", 0.0),
            n_truncated_delta=c.get("n_truncated", 0) - b.get("n_truncated", 0),
            n_extraction_failed_delta=c.get("n_extraction_failed", 0) - b.get("n_extraction_failed", 0),
        ))
    return Comparison(current.summary["run_id"], baseline.summary["run_id"], tuple(tasks),
                      tuple(drift_between(current, baseline)), alpha, min_effect)


def render_markdown(comparison: Comparison) -> str:
    lines = [f"# {comparison.current} vs baseline {comparison.baseline}", "",
             f"Regression: a drop of more than {100 * comparison.min_effect:.1f} points, significant at "
             f"{comparison.alpha} on the items both runs scored.", "",
             "| task | current | baseline | delta (points) | shared items | test | p | regression | "
             "tokens in / out delta | cost delta | truncated delta | extraction failed delta |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in comparison.tasks:
        s = t.test
        discordant = f" ({s.only_current_right} up / {s.only_baseline_right} down)" if s.only_current_right is not None else ""
        lines.append(
            f"| {t.task} | {100 * s.current_mean:.1f} | {100 * s.baseline_mean:.1f} | {100 * s.delta:+.1f} | "
            f"{s.n_shared} | {s.method}{discordant} | {s.p_value:.3g} | {'**yes**' if t.regression else 'no'} | "
            f"{t.input_tokens_delta:+d} / {t.output_tokens_delta:+d} | ${t.cost_usd_delta:+.4f} | "
            f"{t.n_truncated_delta:+d} | {t.n_extraction_failed_delta:+d} |")
    lines += ["", "## Drift", ""]
    lines += [f"- {d.what}: {d.baseline} -> {d.current}" for d in comparison.drift] or ["- none"]
    return "\n".join(lines) + "\n"


def finished_runs(results_dir: Path) -> list[Path]:
    return sorted((p.parent for p in results_dir.glob("runs/*/summary.json")), key=lambda p: p.stat().st_mtime)


def previous_run(current: RunRecords, results_dir: Path) -> Path:
    """The latest finished run before `current` with the same model and task."""
    same = [p for p in finished_runs(results_dir) if p.resolve() != current.folder.resolve()
            and _same_job(json.loads((p / "summary.json").read_text()), current.summary)
            and (p / "summary.json").stat().st_mtime <= (current.folder / "summary.json").stat().st_mtime]
    if not same:
        raise CannotCompare(f"no earlier run of model {current.summary['model']} on task "
                            f"{current.summary['task']} under {results_dir}/runs")
    return same[-1]


def _same_job(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["model"] == b["model"] and a["task"] == b["task"]


def fetch_mlflow_run(reference: str, current: RunRecords, workdir: Path) -> Path:
    """The run folder logged as artifacts of an MLflow run, downloaded from the tracking store the
    current run logged to. `mlflow:<run id>`, or `tag:<key>=<value>`: the latest other run of the same
    model and task carrying that tag (e.g. tag:baseline=true)."""
    from mlflow.tracking import MlflowClient

    tracking_uri = tracking_uri_of(current.folder)
    client = MlflowClient(tracking_uri=tracking_uri)
    kind, _, value = reference.partition(":")
    try:
        if kind == "tag":
            key, _, wanted = value.partition("=")
            experiments = [e.experiment_id for e in client.search_experiments()]
            found = client.search_runs(
                experiments, order_by=["attributes.start_time DESC"], max_results=2,
                filter_string=(f"tags.`{key}` = '{wanted}' and tags.model = '{current.summary['model']}' "
                               f"and tags.task = '{current.summary['task']}' "
                               f"and attributes.run_id != '{current.summary.get('mlflow_run_id') or ''}'"))
            if not found:
                raise CannotCompare(f"no MLflow run of model {current.summary['model']} on task "
                                    f"{current.summary['task']} with tag {key}={wanted} in {tracking_uri}")
            value = found[0].info.run_id
        return Path(client.download_artifacts(value, "run", str(workdir)))
    except CannotCompare:
        raise
    except Exception as exc:  # mlflow raises several types for an unknown run or store
        raise CannotCompare(f"cannot fetch MLflow run {value} from {tracking_uri}: {exc}") from None


def render_plot(current: RunRecords, baseline: RunRecords, path: Path) -> None:
    """Score with 95% intervals per task for both runs, and cost per correct answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in current.summary["tasks"] if t in baseline.summary["tasks"]]
    fig, (scores_ax, cost_ax) = plt.subplots(1, 2, figsize=(11, 1.5 + 0.45 * len(tasks)))
    for offset, (label, records) in enumerate((("baseline", baseline), ("current", current))):
        for i, task in enumerate(tasks):
            t = records.summary["tasks"][task]
            if "ci95" in t:
                lo, hi = (100 * x for x in t["ci95"])
                v = 100 * t["value"]
                scores_ax.errorbar(v, i + 0.2 * offset, xerr=[[v - lo], [hi - v]], fmt="o", capsize=3,
                                   color=("tab:gray", "tab:blue")[offset], label=label if i == 0 else None)
            cost = t.get("cost_per_correct_usd")
            if cost is not None:
                cost_ax.barh(i + 0.2 * offset, cost, height=0.2, color=("tab:gray", "tab:blue")[offset])
    for ax in (scores_ax, cost_ax):
        ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
    scores_ax.set_xlabel("score (%) with 95% CI")
    cost_ax.set_xlabel("USD per correct answer")
    scores_ax.legend(fontsize=7)
    fig.suptitle(f"{current.summary['run_id']} vs {baseline.summary['run_id']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("current", nargs="?", help="run folder (default: the latest finished run)")
    parser.add_argument("--baseline", default="previous",
                        help="baseline: a run folder; 'previous' (the latest earlier run of the same model and "
                             "task); mlflow:<run id>; or tag:<key>=<value> (latest such MLflow run)")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--suite", help="with no CURRENT: the latest run of this suite")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-effect", type=float, default=0.01, help="smallest drop that counts (fraction)")
    parser.add_argument("--report", help="also write the Markdown report here")
    args = parser.parse_args(argv)
    try:
        results_dir = Path(args.results_dir)
        if args.current:
            current_dir = Path(args.current)
        else:
            runs = [p for p in finished_runs(results_dir) if args.suite is None
                    or json.loads((p / "summary.json").read_text()).get("suite") == args.suite]
            if not runs:
                raise CannotCompare(f"no finished run{' of suite ' + args.suite if args.suite else ''} "
                                    f"under {results_dir}/runs")
            current_dir = runs[-1]
        current = RunRecords.load(current_dir)
        with tempfile.TemporaryDirectory() as workdir:
            if args.baseline == "previous":
                baseline_dir = previous_run(current, results_dir)
            elif args.baseline.startswith(("mlflow:", "tag:")):
                baseline_dir = fetch_mlflow_run(args.baseline, current, Path(workdir))
            else:
                baseline_dir = Path(args.baseline)
            baseline = RunRecords.load(baseline_dir)
        comparison = compare_runs(current, baseline, args.alpha, args.min_effect)
    except CannotCompare as exc:
        print(f"[harness.compare] cannot compare: {exc}", file=sys.stderr)
        return EXIT_CANNOT_COMPARE
    report = render_markdown(comparison)
    print(report)
    if args.report:
        Path(args.report).write_text(report, encoding="utf-8")
    written = [current_dir / "compare.json", current_dir / "compare.md", current_dir / "compare.png"]
    written[0].write_text(json.dumps(comparison.to_dict(), indent=2, default=str))
    written[1].write_text(report, encoding="utf-8")
    render_plot(current, baseline, written[2])
    if current.summary.get("mlflow_run_id"):
        log_files_to_run(current.folder, current.summary["mlflow_run_id"], written, "compare")
    return EXIT_REGRESSION if comparison.regressed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
