"""One MLflow run per job: flattened redacted config as params, scores / CIs / tokens / cost as
metrics, the contract tags, and the run folder as artifacts.

Made for comparing in the MLflow UI: every run carries the same headline metrics (`score`,
`score.ci_low`, `score.ci_high`, `n`, `cost_per_correct_usd`, `cost_per_sample_usd`) beside the
task-named ones, so runs of different tasks and models line up in one table or chart; a readable
unique name (`model · task · settings · time`); its true start and end times; `benchmark`,
`protocol`, `provider`, `model`, `task`, `suite` tags and a description. MLflow 3's UI opens an
experiment on its GenAI view unless the URL says `workflowType=machine_learning` (runs_link) or the
experiment is tagged `mlflow.experimentKind=custom_model_development`: both are done here."""

from __future__ import annotations

import math
import os
import shutil
import socket
import threading
from pathlib import Path
from urllib.parse import quote, urlparse
from typing import Any

from harness.common.errors import root_cause
from harness.config import ConfigError, RunConfig, TrackingConfig
from harness.common.headline import headline_task

_MAX_PARAM_LEN = 6000
# How MLflow 3's UI is told to show runs (not GenAI traces): an experiment tag it reads, and a URL parameter.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
RUNS_VIEW_QUERY = "workflowType=machine_learning"
NOTE_TAG = "mlflow.note.content"  # the description MLflow shows on a run's or an experiment's page
EXPERIMENT_NOTE = (
    "Runs of `python -m harness`: one per (model, task) job. Compare them on the common metrics `score` "
    "(the task's headline metric, a fraction in [0, 1]) with `score.ci_low` / `score.ci_high` (95% interval), "
    "`n`, `cost_per_correct_usd` and `cost_per_sample_usd`; task-named metrics (`<task>.<metric>`) carry the "
    "details. Tags `benchmark`, `protocol`, `provider`, `model`, `task`, `suite` group and filter them; "
    "`claim.<id>` tags give each published claim's verdict. Every run's folder (summary.json, samples.jsonl, "
    "claims report) is under its artifacts, `run/`.")


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: str(obj)[:_MAX_PARAM_LEN]}


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The metric names of the contract, taken from summary.json so the two cannot disagree."""
    metrics: dict[str, float] = {}
    for task, s in summary["tasks"].items():
        base = f"{task}.{s['metric']}"
        metrics[base] = s["value"]
        metrics[f"{base}.ci_low"], metrics[f"{base}.ci_high"] = s["ci95"]
        if s["stderr"] is not None:
            metrics[f"{base}.stderr"] = s["stderr"]
        metrics[f"{task}.n"] = s["n"]
        if s.get("repeats", 1) > 1:  # task.repeats: answers scored, and how much of their variance repeats can remove
            metrics[f"{task}.n_samples"] = s["n_samples"]
            if s.get("within_item_share") is not None:
                metrics[f"{task}.within_item_share"] = s["within_item_share"]
        metrics[f"{task}.n_truncated"] = s["n_truncated"]
        metrics[f"{task}.n_extraction_failed"] = s["n_extraction_failed"]
        metrics[f"{task}.n_missing_response"] = s["n_missing_response"]
        metrics[f"{task}.n_errors"] = s.get("n_errors", 0)
        metrics[f"{base}.excluding_failures"] = s["value_excluding_failures"]
        metrics[f"{task}.cost_usd"] = s["cost_usd"]
        for name, value in s["metrics"].items():
            if name != s["metric"]:
                metrics[f"{task}.{name}"] = value
        for rule, value in (s.get("sensitivity") or {}).items():
            metrics[f"{base}.sensitivity.{rule}"] = value
        for stage, count in s["extraction_stages"].items():
            metrics[f"{task}.extraction_stage.{stage}"] = count
        for filter_name, value in s["by_filter"].items():
            metrics[f"{task}.by_filter.{filter_name}.{s['metric']}"] = value
        for measure, q in (s.get("speed") or {}).items():  # streamed runs: speed.ttft_ms.p50, ...
            if isinstance(q, dict):
                metrics.update({f"{task}.speed.{measure}.{k}": v for k, v in q.items()})
    usage = summary["usage"]
    metrics.update({
        "cost_usd": summary["cost_usd"],
        "cost_usd_new": summary["cost_usd_new"],
        "tokens.input": usage["input_tokens"],
        "tokens.cached_input": usage["cached_input_tokens"],
        "tokens.output": usage["output_tokens"],
        "tokens.reasoning": usage["reasoning_tokens"],
        "requests": usage["requests"],
        "requests_sent": summary["requests_sent"],
        "tokens.cache_write": usage.get("cache_write_input_tokens", 0),
        "n_errors": summary.get("n_errors", 0),
        "complete": float(summary.get("complete", True)),
        "wall_seconds": summary["wall_seconds"],
    })
    metrics.update(headline_metrics(summary))
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def headline_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The metrics every run has under the same names, whatever its task: what the UI compares across runs."""
    task = headline_task(summary)
    if task is None:
        return {}
    s = summary["tasks"][task]
    low, high = s["ci95"]
    metrics = {"score": s["value"], "score.ci_low": low, "score.ci_high": high, "n": s["n"],
               "cost_per_correct_usd": s.get("cost_per_correct_usd"), "cost_per_sample_usd": s.get("cost_per_sample_usd")}
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def run_name(summary: dict[str, Any], settings: str) -> str:
    """`model · task · settings · HH:MM:SS abc123`: the start time (UTC) and the run id's random tail make
    it unique, even for jobs of one suite started in the same second."""
    run_id = summary["run_id"]
    stamp, tail = run_id.split("-", 1)[0], run_id.rsplit("-", 1)[-1]  # 20261130T093300Z-...-3f9a1c
    when = f"{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]} {tail}" if len(stamp) == 16 and stamp[8] == "T" else run_id
    return " · ".join(part for part in (summary["model"], summary["task"], settings, when) if part)


def runs_link(tracking_uri: str, experiment_id: str) -> str:
    """Where a person sees this experiment's runs: the page itself for a server, else the command and the page."""
    page = f"#/experiments/{quote(experiment_id)}/runs?{RUNS_VIEW_QUERY}"
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {tracking_uri}  then open http://127.0.0.1:5000/{page}"


def settings_label(cfg: RunConfig) -> str:
    """What sets this run apart from another of the same model and task, for its MLflow name."""
    g = cfg.model.generation
    parts = [f"thinking={'on' if cfg.model.thinking else 'off'}" if cfg.model.thinking is not None else "",
             f"effort={g.reasoning_effort}" if g.reasoning_effort else "",
             f"limit={cfg.limit}" if cfg.limit else ""]
    return " · ".join(p for p in parts if p)


def protocol_label(cfg: RunConfig) -> str:
    """The protocol in one line (shots, prompt format, sampling, length, thinking): an MLflow tag to group by."""
    g = cfg.model.generation
    shots = "task-default shots" if cfg.task.num_fewshot is None else f"{cfg.task.num_fewshot}-shot"
    parts = [shots, "chat" if cfg.task.apply_chat_template else "completion",
             f"temperature={g.temperature}", f"max_tokens={g.max_tokens or 'task'}"]
    if cfg.model.thinking is not None:
        parts.append(f"thinking={'on' if cfg.model.thinking else 'off'}")
    if g.reasoning_effort:
        parts.append(f"effort={g.reasoning_effort}")
    if cfg.task.repeats:
        parts.append(f"repeats={cfg.task.repeats}")
    return ", ".join(parts)


def run_description(cfg: RunConfig, summary: dict[str, Any]) -> str:
    """The MLflow run's description: what was run, and how to read the numbers."""
    task = headline_task(summary)
    s = summary["tasks"].get(task) if task else None
    score = (f"`score` {s['value']:.4f}, 95% interval [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}] on n={s['n']} "
             f"({s['metric']} of {task}; {s['n_errors']} document(s) had no response and are not scored)" if s else "no score")
    return (f"**{cfg.model.name}** (`{cfg.model.model_id}`, provider {cfg.model.provider}) on **{cfg.task.name}** "
            f"({cfg.task.benchmark or cfg.task.name}{f', limit {cfg.limit}' if cfg.limit else ''}): {protocol_label(cfg)}.\n\n"
            f"{score}; cost ${summary['cost_usd']:.4f} at the price book's rates"
            f"{'' if summary['complete'] else ' (INCOMPLETE: re-run the same command to retry the failures)'}.\n\n"
            f"Scores are fractions in [0, 1]; `cost_per_correct_usd` is the cost per right answer. The run folder "
            f"(summary.json, samples.jsonl, claims.html) is under Artifacts → run/.")

MIN_FREE_BYTES = 8 << 20  # a local store needs room for its tables and a run's artifacts


def precheck(cfg: TrackingConfig, results_dir: Path) -> None:
    """What can go wrong with the store, found before any request is paid for, in milliseconds: a
    local store's folder not writable or its disk full, a server not listening."""
    uri = cfg.tracking_uri
    fix = "run without MLflow (tracking=none), or point tracking.tracking_uri elsewhere"
    if uri.startswith("sqlite:"):
        folder = Path(uri.split(":///", 1)[1]).parent if ":///" in uri else results_dir
        folder.mkdir(parents=True, exist_ok=True)  # a read-only disk: OSError, explained by the entry point
        free = shutil.disk_usage(folder).free
        if free < MIN_FREE_BYTES:
            raise ConfigError(f"cannot open the MLflow store at {uri}: the disk is full ({free:,} bytes free in "
                              f"{folder}); free disk space, or {fix}.")
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"cannot open the MLflow store at {uri}: {folder} is not writable; fix it, or {fix}.")
    elif uri.startswith(("http://", "https://")):
        where = urlparse(uri)
        try:
            socket.create_connection((where.hostname, where.port or (443 if where.scheme == "https" else 80)),
                                     timeout=5).close()
        except OSError as exc:
            raise ConfigError(f"cannot reach the MLflow server at {uri} ({exc.strerror or exc}); start it, or {fix}.") \
                from None


class MlflowRun:
    """Created with the job's true start time before summary.json is written (it records the MLflow
    run id), finished (end time now) after. Opening the store (importing MLflow, ~1.5 s of CPU; creating
    and migrating a new SQLite store, ~2 s more) delayed the first request; with `background`, it waits
    for `begin()` (run.py calls it at the first response) and runs in a thread while the requests are
    on the wire, after `precheck` made sure before any request that a bad URI or a full disk costs nothing."""

    def __init__(self, cfg: TrackingConfig, results_dir: Path, *, background: bool = False):
        self._cfg, self._results_dir = cfg, results_dir
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._opened = False
        precheck(cfg, results_dir)
        if not background:
            self._ready()

    def begin(self) -> None:
        """Start opening the store in a thread (once; cheap to call for every response). For a local
        store not a daemon: an interrupted run lets a migration that started finish (~2 s), never leaving
        half a store; for a server a daemon, so Ctrl-C never waits out its HTTP timeouts."""
        if self._thread is None and not self._opened:
            self._thread = threading.Thread(target=self._open_in_thread, name="mlflow-open",
                                            daemon=not self._cfg.tracking_uri.startswith("sqlite:"))
            self._thread.start()

    def _open_in_thread(self) -> None:
        try:
            self._open_checked()
        except BaseException as exc:  # handed to the main thread by _ready
            self._error = exc

    def _ready(self) -> None:
        """The store open (opened here if begin() never ran), or its error."""
        if self._opened:
            return
        if self._thread is None:
            self._open_checked()
        else:
            self._thread.join()
            if self._error is not None:
                raise self._error
        self._opened = True

    def _open_checked(self) -> None:
        cfg = self._cfg
        try:
            self._open(cfg, self._results_dir)
        except (ConfigError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a full disk, a locked or foreign database, a server that refuses
            cause = root_cause(exc)
            raise ConfigError(
                f"cannot open the MLflow store at {cfg.tracking_uri}: {type(cause).__name__}: "
                f"{str(cause).splitlines()[0][:300] if str(cause) else ''}. Free disk space or fix the store, point "
                f"tracking.tracking_uri elsewhere, or run without MLflow (tracking=none); the responses received "
                f"are in the cache, so the same command re-runs them free.") from None

    def _open(self, cfg: TrackingConfig, results_dir: Path) -> None:
        import mlflow
        from filelock import FileLock

        self._mlflow = mlflow
        mlflow.set_tracking_uri(cfg.tracking_uri)
        results_dir.mkdir(parents=True, exist_ok=True)
        # Parallel suite jobs would race to create a local SQLite store's tables (alembic fails) and
        # the experiment: the first job does it under a lock, the others find it done.
        with FileLock(str(results_dir / ".mlflow-init.lock")):
            experiment = mlflow.get_experiment_by_name(cfg.experiment)
            if experiment is None:
                artifact_location = None
                if cfg.tracking_uri.startswith("sqlite:"):
                    artifact_location = (results_dir / "mlartifacts").resolve().as_uri()
                try:
                    mlflow.create_experiment(cfg.experiment, artifact_location=artifact_location)
                except mlflow.exceptions.MlflowException:
                    # Jobs on other machines (a shared server) may have created it meanwhile.
                    if mlflow.get_experiment_by_name(cfg.experiment) is None:
                        raise
            experiment = mlflow.set_experiment(cfg.experiment)
            tags = experiment.tags or {}
            if tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1] or NOTE_TAG not in tags:
                mlflow.set_experiment_tag(*EXPERIMENT_KIND)
                mlflow.set_experiment_tag(NOTE_TAG, EXPERIMENT_NOTE)
        self.tracking_uri = cfg.tracking_uri
        self.experiment_id: str = experiment.experiment_id
        self.run_id: str | None = None

    def start(self, name: str, tags: dict[str, str], started_at: float) -> str:
        """Create the run at the job's true start (epoch seconds) and make it the active one."""
        self._ready()
        from mlflow.tracking import MlflowClient

        run = MlflowClient().create_run(self.experiment_id, start_time=int(started_at * 1000), tags=tags,
                                        run_name=name)
        self._mlflow.start_run(run_id=run.info.run_id)
        self.run_id = run.info.run_id
        return self.run_id

    @property
    def link(self) -> str:
        self._ready()
        return runs_link(self.tracking_uri, self.experiment_id)

    def log(self, params: dict[str, str], metrics: dict[str, float]) -> None:
        self._mlflow.log_params(params)
        self._mlflow.log_metrics(metrics)

    def log_samples(self, rows: list[dict[str, Any]]) -> None:
        """Per-sample table (MLflow's artifact view of samples_table.json), one row per scored sample:
        what was asked, the target, the response, what was extracted, whether it was right, tokens, cost."""
        table = {
            "task": [r.get("task") for r in rows],
            "doc_id": [r.get("doc_id") for r in rows],
            "question": [_cell(r.get("question")) for r in rows],
            "target": [_cell(r.get("target")) for r in rows],
            "response": [_cell(r.get("response")) for r in rows],
            "extracted": [_cell(r.get("extracted")) for r in rows],
            "correct": [None if r.get("score") is None else bool(r["score"]) for r in rows],
            "score": [r.get("score") for r in rows],
            "finish_reason": [r.get("finish_reason") for r in rows],
            "input_tokens": [(r.get("usage") or {}).get("input_tokens") for r in rows],
            "output_tokens": [(r.get("usage") or {}).get("output_tokens") for r in rows],
            "cost_usd": [r.get("cost_usd") for r in rows],
            "latency_s": [r.get("latency_s") for r in rows],
        }
        self._mlflow.log_table(data=table, artifact_file="samples_table.json")

    def finish(self, run_folder: Path, status: str = "FINISHED") -> None:
        self._ready()
        if status == "FINISHED":
            self._mlflow.log_artifacts(str(run_folder), artifact_path="run")
        self._mlflow.end_run(status=status)


def _cell(value: Any, limit: int = 2000) -> str | None:
    return None if value is None else str(value)[:limit]


def tracking_uri_of(run_folder: Path) -> str:
    """The tracking URI a finished run logged to, from its config.yaml."""
    import yaml

    return yaml.safe_load((run_folder / "config.yaml").read_text())["tracking"]["tracking_uri"]


def log_files_to_run(run_folder: Path, mlflow_run_id: str, files: list[Path], artifact_path: str) -> None:
    """Attach files made after the run (a claims report, a comparison) to its MLflow run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri_of(run_folder))
    for file in files:
        client.log_artifact(mlflow_run_id, str(file), artifact_path=artifact_path)
