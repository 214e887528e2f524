"""One MLflow run per job: flattened redacted config as params, scores / CIs / tokens / cost as
metrics, the contract tags, and the run folder as artifacts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.config import TrackingConfig

_MAX_PARAM_LEN = 6000


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
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


class MlflowRun:
    """Started before summary.json is written (it records the MLflow run id), finished after."""

    def __init__(self, cfg: TrackingConfig, results_dir: Path):
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
            mlflow.set_experiment(cfg.experiment)
        self.run_id: str | None = None

    def start(self, run_name: str, tags: dict[str, str]) -> str:
        run = self._mlflow.start_run(run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        return self.run_id

    def log(self, params: dict[str, str], metrics: dict[str, float]) -> None:
        self._mlflow.log_params(params)
        self._mlflow.log_metrics(metrics)

    def log_samples(self, rows: list[dict[str, Any]]) -> None:
        """Per-sample table (MLflow's Evaluation/Artifacts view), one row per scored sample."""
        columns = ("task", "doc_id", "doc_key", "score", "extracted", "extraction_stage", "finish_reason",
                   "cost_usd", "latency_s", "response")
        table = {c: [str(r.get(c))[:2000] if c == "response" else r.get(c) for r in rows] for c in columns}
        table["input_tokens"] = [r["usage"]["input_tokens"] for r in rows]
        table["output_tokens"] = [r["usage"]["output_tokens"] for r in rows]
        self._mlflow.log_table(data=table, artifact_file="samples_table.json")

    def finish(self, run_folder: Path, status: str = "FINISHED") -> None:
        if status == "FINISHED":
            self._mlflow.log_artifacts(str(run_folder), artifact_path="run")
        self._mlflow.end_run(status=status)


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
