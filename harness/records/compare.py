"""Run against baseline: per-task score deltas with a paired test on the items both runs scored,
token / cost / failure deltas, and drift alarms (served model id, system fingerprint, pricing,
dataset hashes, every generation setting and protocol field of the resolved config) that fire even
when scores hold.

    python -m harness.compare [CURRENT_RUN_DIR] [--baseline BASELINE_RUN_DIR | --baseline previous]

Exit codes (for CI gates): 0 no regression, 1 regression (a significant drop beyond the minimum
effect), 2 could not compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml
from scipy import stats as scipy_stats

from harness.common.stats import bootstrap_mean, exact_interval, paired_bootstrap_p
from harness.config import RunConfig
from harness.records.tracking import log_files_to_run, tracking_uri_of

EXIT_OK, EXIT_REGRESSION, EXIT_CANNOT_COMPARE = 0, 1, 2
REGRESSED, IMPROVED, NO_CHANGE = "regressed", "improved", "no significant change"
UNSET = "(unset)"  # a setting one run's config.yaml does not have
# Config fields that do not change what is measured: names and places, plumbing and patience, spending
# limits, streaming (changes latency, not answers), and what other alarms cover (pricing and the dataset
# hashes come from summary.json; a replay's path is a location, its answers are what the scores compare).
NOT_PROTOCOL = (
    "run_id", "results_dir", "progress", "suite", "dry_run", "tracking", "cache", "claims", "budget", "data",
    "model.api_key_env", "model.api_key_optional", "model.concurrency", "model.max_retries",
    "model.rate_limit_patience_s", "model.request_timeout_s", "model.connect_timeout_s",
    "model.first_token_timeout_s", "model.idle_timeout_s", "model.attempt_timeout_s", "model.stream",
    "model.pricing", "model.balance_url", "model.balance_currency", "model.notes", "model.path",
    "model.server.host", "model.server.startup_timeout_s", "model.server.stop_grace_s", "model.server.executable",
    "model.server.gpu_memory_utilization",
    "task.benchmark", "task.dataset_repo", "task.dataset_path", "task.dataset_revision", "task.dataset_sha256",
)


class CannotCompare(Exception):
    """The two runs cannot be compared; the message says why."""


def _schema_of(hint: Any) -> Any:
    """The config dataclass a field holds (Optional[ServerConfig] -> ServerConfig); None for a leaf."""
    return next((c for c in (hint, *get_args(hint)) if is_dataclass(c)), None)


def protocol_settings(config: dict[str, Any], schema: Any = RunConfig, prefix: str = "") -> dict[str, Any]:
    """A resolved config as dotted keys down to the schema's leaves (free-form values such as extra_body
    stay whole), without NOT_PROTOCOL: the settings that must match for two runs' scores to compare."""
    settings: dict[str, Any] = {}
    hints = get_type_hints(schema)
    for key, value in config.items():
        name = prefix + key
        if any(name == skip or name.startswith(skip + ".") for skip in NOT_PROTOCOL):
            continue
        nested = _schema_of(hints.get(key))
        if nested is not None and (value is None or isinstance(value, dict)):
            settings.update(protocol_settings(value or {}, nested, name + "."))
        else:
            settings[name] = value
    return settings


@dataclass(frozen=True)
class RunRecords:
    folder: Path
    summary: dict[str, Any]
    scores: dict[str, dict[str, float]]  # task -> doc key -> headline score
    fingerprints: frozenset[str]  # system_fingerprint values seen in the samples
    settings: dict[str, Any] | None = None  # protocol_settings of config.yaml; None without one

    @classmethod
    def load(cls, folder: Path) -> "RunRecords":
        summary_path, samples_path = folder / "summary.json", folder / "samples.jsonl"
        if not summary_path.is_file() or not samples_path.is_file():
            raise CannotCompare(f"{folder} is not a finished run (no summary.json / samples.jsonl)")
        answers: dict[str, dict[str, list[float]]] = {}  # an item's repeats (task.repeats) weigh as its mean
        fingerprints = set()
        for line in samples_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                answers.setdefault(row["task"], {}).setdefault(row.get("doc_key") or str(row["doc_id"]), []).append(
                    float(row["score"]))
                if row.get("system_fingerprint"):
                    fingerprints.add(row["system_fingerprint"])
        scores = {task: {key: sum(v) / len(v) for key, v in items.items()} for task, items in answers.items()}
        summary = json.loads(summary_path.read_text())
        for group, entry in summary["tasks"].items():  # a group (MMLU-Pro) pools its categories' items
            if entry.get("subtasks"):
                scores[group] = {k: v for sub in entry["subtasks"] for k, v in scores.get(sub, {}).items()}
        config = folder / "config.yaml"
        settings = protocol_settings(yaml.safe_load(config.read_text()) or {}) if config.is_file() else None
        return cls(folder, summary, scores, frozenset(fingerprints), settings)


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
    delta_ci95: tuple[float, float]


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
        # delta = flipped * (2 * up_share - 1), over the exact 95% intervals of both: the share of items
        # that flipped, and the share of those that went up (what McNemar's exact test inverts, so the
        # interval leaves out 0 exactly when p < 0.05: plot and test agree). Conservative: a box of two.
        up_share = exact_interval(up, up + down) if up + down else (0.0, 1.0)  # nothing flipped: any share
        ends = [f * (2 * u - 1) for f in exact_interval(up + down, len(shared)) for u in up_share]
        ci = (min(ends), max(ends))
        return PairedTest("exact McNemar", len(shared), mean_a, mean_b, mean_a - mean_b, up, down, float(p), ci)
    differences = [x - y for x, y in zip(a, b)]
    return PairedTest("paired bootstrap", len(shared), mean_a, mean_b, mean_a - mean_b, None, None,
                      paired_bootstrap_p(differences), bootstrap_mean(differences).ci95)


@dataclass(frozen=True)
class TaskComparison:
    task: str
    test: PairedTest
    regression: bool
    verdict: str  # REGRESSED, IMPROVED or NO_CHANGE
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
    """What changed under the same config name, each protocol setting by its dotted name
    (model.generation.max_tokens: 32 -> 48): a change is reported even when scores hold."""
    cs, bs = current.summary, baseline.summary
    checks = [
        ("served model id", bs["endpoint"].get("served_model"), cs["endpoint"].get("served_model")),
        ("system_fingerprint", sorted(baseline.fingerprints), sorted(current.fingerprints)),
        ("pricing", bs.get("pricing"), cs.get("pricing")),
    ]
    for task in sorted(set(cs.get("dataset", {})) & set(bs.get("dataset", {}))):
        for key in ("sha256", "files_sha256", "revision"):
            checks.append((f"dataset {task} {key}", bs["dataset"][task].get(key), cs["dataset"][task].get(key)))
    if current.settings is not None and baseline.settings is not None:
        checks += [(key, baseline.settings.get(key, UNSET), current.settings.get(key, UNSET))
                   for key in {**baseline.settings, **current.settings}]
    else:  # a run without config.yaml: its settings could not be compared, which must not read as "none"
        present = ["present" if r.settings is not None else "missing" for r in (baseline, current)]
        checks.append(("config.yaml", *present))
    return [Drift(what, before, after) for what, before, after in checks if before != after]


def _verdict(test: PairedTest, alpha: float, min_effect: float) -> str:
    if test.p_value >= alpha or abs(test.delta) <= min_effect:
        return NO_CHANGE
    return REGRESSED if test.delta < 0 else IMPROVED


def compare_runs(current: RunRecords, baseline: RunRecords, alpha: float = 0.05,
                 min_effect: float = 0.01) -> Comparison:
    """A regression (an improvement): a drop (a rise) of more than `min_effect` (a fraction) that the
    paired test finds significant at `alpha`."""
    shared_tasks = sorted(set(current.scores) & set(baseline.scores))
    if not shared_tasks:
        raise CannotCompare(f"no task in common: {sorted(current.scores)} vs {sorted(baseline.scores)}")
    tasks = []
    for task in shared_tasks:
        test = paired_test(current.scores[task], baseline.scores[task])
        c, b = current.summary["tasks"].get(task, {}), baseline.summary["tasks"].get(task, {})
        cu, bu = c.get("usage", {}), b.get("usage", {})
        verdict = _verdict(test, alpha, min_effect)
        tasks.append(TaskComparison(
            task=task, test=test, regression=verdict == REGRESSED, verdict=verdict,
            input_tokens_delta=cu.get("input_tokens", 0) - bu.get("input_tokens", 0),
            output_tokens_delta=cu.get("output_tokens", 0) - bu.get("output_tokens", 0),
            cost_usd_delta=c.get("cost_usd", 0.0) - b.get("cost_usd", 0.0),
            n_truncated_delta=c.get("n_truncated", 0) - b.get("n_truncated", 0),
            n_extraction_failed_delta=c.get("n_extraction_failed", 0) - b.get("n_extraction_failed", 0),
        ))
    return Comparison(current.summary["run_id"], baseline.summary["run_id"], tuple(tasks),
                      tuple(drift_between(current, baseline)), alpha, min_effect)


def _delta_text(test: PairedTest) -> str:
    lo, hi = test.delta_ci95
    return f"{100 * test.delta:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def render_markdown(comparison: Comparison) -> str:
    lines = [f"# {comparison.current} vs baseline {comparison.baseline}", "",
             f"Regression: a drop of more than {100 * comparison.min_effect:.1f} points, significant at "
             f"{comparison.alpha} on the items both runs scored.", "",
             "| task | current | baseline | delta (points) [95% CI] | shared items | test | p | regression | "
             "tokens in / out delta | cost delta | truncated delta | extraction failed delta |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in comparison.tasks:
        s = t.test
        discordant = f" ({s.only_current_right} up / {s.only_baseline_right} down)" if s.only_current_right is not None else ""
        lines.append(
            f"| {t.task} | {100 * s.current_mean:.1f} | {100 * s.baseline_mean:.1f} | {_delta_text(s)} | "
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


_VERDICT_COLORS = {REGRESSED: "tab:red", IMPROVED: "tab:green", NO_CHANGE: "dimgray"}


def _xerr(value: float, lo: float, hi: float) -> list[list[float]]:
    """Error bar lengths; a bootstrap interval need not contain its estimate, and a bar cannot be negative."""
    return [[max(value - lo, 0.0)], [max(hi - value, 0.0)]]


def plot_panels(current: RunRecords, baseline: RunRecords) -> tuple[str, ...]:
    """Scores and paired deltas always; USD per correct answer only when a run cost something (at $0
    that panel is an empty axis)."""
    spent = any(t.get("cost_usd") for r in (current, baseline) for t in r.summary["tasks"].values())
    return ("scores", "delta", "cost") if spent else ("scores", "delta")


def compare_figure(comparison: Comparison, current: RunRecords, baseline: RunRecords) -> Any:
    """One row per task: both runs' scores with 95% intervals (the paired means without one when the
    summary has none); the paired delta with its interval, p and verdict; cost per correct answer when
    money was spent. Titled by model and task, the run ids below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels, rows = plot_panels(current, baseline), comparison.tasks
    fig, axes = plt.subplots(1, len(panels), sharey=True, figsize=(3.5 * len(panels) + 5, 2.2 + 0.7 * len(rows)),
                             width_ratios=[3, 2, 1.5][:len(panels)], layout="constrained")
    ax = dict(zip(panels, axes))
    for offset, label, records, color in ((-0.15, "baseline", baseline, "tab:gray"),
                                          (0.15, "current", current, "tab:blue")):
        for i, t in enumerate(rows):
            entry = records.summary["tasks"].get(t.task, {})
            v = entry.get("value", getattr(t.test, f"{label}_mean"))
            v, lo, hi = (100 * x for x in (v, *entry.get("ci95", (v, v))))
            ax["scores"].errorbar(v, i + offset, xerr=_xerr(v, lo, hi), fmt="o", capsize=3, color=color,
                                  label=label if i == 0 else None)
            if "cost" in ax and entry.get("cost_per_correct_usd") is not None:
                ax["cost"].barh(i + offset, entry["cost_per_correct_usd"], height=0.3, color=color)
    lo, hi = ax["scores"].get_xlim()
    ax["scores"].set_xlim(max(lo, -3), min(hi, 103))  # fitted to the intervals, within 0-100 plus room
    for i, t in enumerate(rows):
        d, (lo, hi) = 100 * t.test.delta, (100 * x for x in t.test.delta_ci95)
        ax["delta"].errorbar(d, i, xerr=_xerr(d, lo, hi), fmt="D", capsize=3, color=_VERDICT_COLORS[t.verdict])
    reach = 1.15 * max(1.0, *(100 * abs(x) for t in rows for x in (t.test.delta, *t.test.delta_ci95)))
    ax["delta"].set_xlim(-reach, reach)  # symmetric: worse left, better right of the zero line
    ax["delta"].axvline(0, color="black", lw=0.8)
    # p and verdict as tick labels on the right of the delta panel: the layout makes room for them.
    verdicts = ax["delta"].twinx()
    verdicts.set_yticks(range(len(rows)), [f"{_delta_text(t.test)}  p = {t.test.p_value:.2g}\n{t.verdict}"
                                           for t in rows], fontsize=8)
    for tick, t in zip(verdicts.get_yticklabels(), rows):
        tick.set_color(_VERDICT_COLORS[t.verdict])
    for a in (*axes, verdicts):
        a.set_ylim(len(rows) - 0.5, -0.5)  # the first task on top
        a.grid(axis="x", alpha=0.3)
    ax["scores"].set_yticks(range(len(rows)), [f"{t.task}\n{t.test.n_shared} paired item{'s' * (t.test.n_shared != 1)}"
                                               for t in rows], fontsize=8)
    ax["scores"].set_xlabel("score (%), 95% CI over all scored items")
    ax["delta"].set_xlabel(f"current − baseline (points), paired 95% CI\nverdict: |Δ| > "
                           f"{100 * comparison.min_effect:g} points at p < {comparison.alpha:g}")
    if "cost" in ax:
        ax["cost"].set_xlabel("USD per correct answer")
        ax["cost"].xaxis.set_major_locator(MaxNLocator(3))  # dollar labels are wide: few ticks
        ax["cost"].xaxis.set_major_formatter("${x:.2g}")
    models = dict.fromkeys(r.summary["model"] for r in (baseline, current))
    tasks = dict.fromkeys(r.summary["task"] for r in (baseline, current))
    fig.suptitle(f"{' → '.join(models)} on {' → '.join(tasks)}: current vs baseline\n"
                 f"current {comparison.current}  ·  baseline {comparison.baseline}", fontsize=10)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def render_plot(comparison: Comparison, current: RunRecords, baseline: RunRecords, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = compare_figure(comparison, current, baseline)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # "tight" takes in the p / verdict labels right of the deltas
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("current", nargs="?", help="run folder (default: the latest finished run)")
    parser.add_argument("--baseline", default="previous",
                        help="baseline: a run folder; 'previous' (the latest earlier run of the same model and "
                             "task); mlflow:<run id>; or tag:<key>=<value> (latest such MLflow run)")
    parser.add_argument("--results-dir", help="where earlier runs are (default: the current run's, else results)")
    parser.add_argument("--suite", help="with no CURRENT: the latest run of this suite")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-effect", type=float, default=0.01, help="smallest drop that counts (fraction)")
    parser.add_argument("--report", help="also write the Markdown report here")
    args = parser.parse_args(argv)
    try:
        # 'previous' is looked for beside the run compared (its folder's results dir), not in ./results.
        results_dir = Path(args.results_dir or (Path(args.current).resolve().parent.parent if args.current else "results"))
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
    render_plot(comparison, current, baseline, written[2])
    if current.summary.get("mlflow_run_id"):
        log_files_to_run(current.folder, current.summary["mlflow_run_id"], written, "compare")
    return EXIT_REGRESSION if comparison.regressed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
