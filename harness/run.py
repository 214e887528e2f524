"""One job, start to finish: config -> endpoint -> lm-eval -> scores -> run folder + MLflow run."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from harness.config import ConfigError, ModelConfig, RunConfig, check_known_keys
from harness.endpoints.base import Endpoint
from harness.endpoints.openai_compat import OpenAICompatEndpoint, resolve_api_key
from harness.records.folder import RunFolder, redact, strip_credentials

if TYPE_CHECKING:  # the heavy modules are imported inside run(), after the cheap checks
    from harness.endpoints.adapter import SpendCounter
    from harness.benchmarks.pins import VerifiedData
    from harness.benchmarks.lm_tasks import DatasetFingerprint
    from harness.scoring.scores import TaskScore

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RunResult:
    run_id: str
    folder: Path
    summary: dict[str, Any]


def new_run_id(cfg: RunConfig) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{cfg.model.name}-{cfg.task.name}-{uuid.uuid4().hex[:6]}"


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class PlannedEndpoint:
    """Stands in for the endpoint during a dry run: its identity (which cached responses are free),
    no key, no server started, nothing sent."""

    identity: str
    base_url: str | None = None

    async def complete(self, request: Any, doc_key: str | None = None) -> Any:
        raise AssertionError("a dry run sends nothing")

    async def aclose(self) -> None:
        return None


def endpoint_identity(model: ModelConfig) -> str:
    """The identity the response cache keys the model's answers by, as open_endpoint's endpoints have it."""
    if model.server is not None and model.provider != "anthropic":
        from harness.endpoints.local_server import server_identity

        return server_identity(model.server, model.model_id)
    if model.provider == "anthropic":
        from harness.endpoints.anthropic_native import normalize_base_url

        return normalize_base_url(model.base_url)
    return model.base_url or ""


@contextlib.contextmanager
def open_endpoint(model: ModelConfig, folder: RunFolder, dry_run: bool = False) -> Iterator[Endpoint]:
    """The endpoint, starting (and later stopping) a managed local server if the model has one."""
    if dry_run and model.provider != "replay":
        yield PlannedEndpoint(endpoint_identity(model))
        return
    if model.provider == "replay":
        from harness.endpoints.replay import ReplayEndpoint

        if not model.path:
            raise ConfigError("model=replay needs the recorded responses: model.path=FILE "
                              "(a samples.jsonl of ours, or an MMLU-Pro result JSON)")
        yield ReplayEndpoint(model.path)
        return
    if model.provider == "anthropic":
        from harness.endpoints.anthropic_native import AnthropicEndpoint

        yield AnthropicEndpoint(model, model.base_url)
        return
    if model.server is None:
        if not model.base_url:
            raise ConfigError(f"model '{model.name}' has neither model.base_url nor a model.server block")
        yield OpenAICompatEndpoint(model, model.base_url)
        return
    from harness.endpoints.local_server import managed_server

    with managed_server(model.server, model.model_id, folder.path / "server.log") as base_url:
        yield OpenAICompatEndpoint(model, base_url, identity=endpoint_identity(model))


_CHATTY_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "anthropic", "alembic", "mlflow.store.db.utils")


@contextlib.contextmanager
def run_log(folder: RunFolder) -> Iterator[None]:
    """Everything logged during the run also goes to the run folder's run.log."""
    handler = logging.FileHandler(folder.path / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    except KeyboardInterrupt:
        _to_file(handler, "run interrupted (Ctrl-C); re-run the same command to resume")
        raise
    except Exception as exc:  # why the run stopped, in its folder (the console gets it from __main__)
        expected = isinstance(exc, (ConfigError, OSError)) or type(exc).__module__.startswith("harness.")
        _to_file(handler, f"run failed: {type(exc).__name__}: {exc}", None if expected else sys.exc_info())
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _to_file(handler: logging.Handler, message: str, exc_info: Any = None) -> None:
    """An ERROR line for run.log only (not the console, which prints the error once, itself)."""
    handler.handle(logging.LogRecord("harness", logging.ERROR, __file__, 0, message, None, exc_info))


def run(raw_cfg: Any) -> RunResult:
    started = time.time()
    for name in _CHATTY_LOGGERS:  # one line per HTTP request would bury the progress bar
        logging.getLogger(name).setLevel(logging.WARNING)
    check_known_keys(raw_cfg)
    cfg: RunConfig = OmegaConf.to_object(raw_cfg)
    if not cfg.dry_run:  # a dry run needs no key: it sends nothing
        resolve_api_key(cfg.model)  # fail before anything slow if the key is missing
    if cfg.task.executes_code and not cfg.dry_run:
        check_sandbox(cfg)  # no money spent on answers that could not be graded safely
    from harness.endpoints.batch import check_spending_config
    from harness.spend.price_book import schedule_for
    from harness.common.contamination import resolve_window

    prices = schedule_for(cfg.model.pricing)  # a wrong book entry fails here, before anything is sent
    check_spending_config(cfg, prices)  # batch / off-peak / prices: the same checks in a dry run
    cfg.task, contamination = resolve_window(cfg.task, cfg.model)  # start_date=auto: after the model's cutoff

    # Heavy imports only once the cheap checks passed.
    from lm_eval import simple_evaluate

    from harness.endpoints.adapter import EndpointLM
    from harness.spend.dry_run import DryRun, read_history
    from harness.spend.off_peak import wait_for_window
    from harness.endpoints.cache import ResponseCache
    from harness.claims.report import write_report
    from harness.benchmarks.data import prepare_dataset
    from harness.common.doc_key import doc_key
    from harness.benchmarks.lm_tasks import check_task_config, fingerprint, load_tasks, task_manager
    from harness.records.tracking import (NOTE_TAG, MlflowRun, flatten, protocol_label, run_description, run_name,
                                          settings_label, summary_metrics)

    run_id = cfg.run_id or new_run_id(cfg)
    folder = RunFolder(cfg.results_dir, run_id)
    resolved = OmegaConf.to_container(raw_cfg, resolve=True)
    folder.write_config(resolved)
    print(f"[harness] run {run_id}: model={cfg.model.name} task={cfg.task.name} limit={cfg.limit} -> {folder.path}")

    with run_log(folder):
        verified = prepare_dataset(
            repo=cfg.task.dataset_repo, revision=cfg.task.dataset_revision, dataset_path=cfg.task.dataset_path,
            mirror=cfg.data.mirror, expected=cfg.task.dataset_sha256, allow_mismatch=cfg.data.allow_hash_mismatch,
            config=cfg.task.dataset_config, task=cfg.task.name)
        cfg.task = dataclasses.replace(cfg.task, dataset_path=verified.local_path)  # lm-eval reads exactly this
        manager = task_manager(cfg.task)
        tasks = load_tasks(cfg.task, manager)
        check_task_config(tasks, cfg.task)
        datasets = {name: fingerprint(task, cfg.task) for name, task in tasks.items()}
        # Checked before any request so that a bad tracking URI costs nothing; opened at the first response.
        mlflow_run = MlflowRun(cfg.tracking, Path(cfg.results_dir), background=True) if cfg.tracking.enabled else None

        def on_response(record: Any) -> None:
            folder.append_response(record)
            if mlflow_run is not None:
                mlflow_run.begin()  # the store opens while the requests are on the wire
        replaying = cfg.model.provider == "replay"
        cache = ResponseCache(cfg.cache.path) if cfg.cache.enabled and not replaying else None
        balance_before = read_balance(cfg)
        try:
            with open_endpoint(cfg.model, folder, dry_run=cfg.dry_run) as endpoint:
                lm = EndpointLM(endpoint, cfg.model, cache, on_response=on_response,
                                show_progress=cfg.progress, on_error=folder.append_error,
                                budget_usd=cfg.budget.max_usd, dry_run=cfg.dry_run,
                                history=read_history(cfg.results_dir, cfg.model.name, cfg.task.name)
                                if cfg.dry_run else None, prices=prices, off_peak_window=cfg.schedule.window,
                                batch_dir=str(Path(cfg.results_dir) / "batches"))
                if cfg.schedule.off_peak and not cfg.dry_run:
                    wait_for_window(prices, cfg.schedule.window, show=cfg.progress)
                replay_report = None
                try:
                    output = simple_evaluate(
                        model=lm,
                        tasks=list(tasks.values()),
                        task_manager=manager,
                        limit=cfg.limit,
                        apply_chat_template=cfg.task.apply_chat_template,
                        fewshot_as_multiturn=cfg.task.fewshot_as_multiturn and cfg.task.apply_chat_template,
                        log_samples=True,
                        bootstrap_iters=0,  # our intervals come from harness.common.stats
                    )
                except DryRun as planned:
                    return finish_dry_run(cfg, run_id, folder, planned.estimate, started)
                if replaying:
                    all_keys = {doc_key(doc) for task in tasks.values() for doc in task.eval_docs}
                    replay_report = endpoint.report(all_keys).to_dict()
        finally:
            folder.close()
            if cache is not None:
                cache.close()
        assert output is not None
        from harness.scoring.scores import score_run  # scipy.stats: 0.7 s of imports kept off the first request

        scores, rows = score_run(output["samples"], lm.records, cfg.task, lm.errors, tasks)
        folder.write_samples(rows)
        summary = build_summary(cfg, run_id, endpoint.base_url, scores, rows, lm.spend, datasets, verified, started)
        summary.update(lm.price_records(), contamination=contamination)
        add_speed(summary, lm.records)
        add_run_checks(summary, cfg, endpoint, balance_before)
        if cfg.claims.enabled:
            summary["claims"], unjudged = check_claims(cfg, summary, prices)
            write_report(summary, folder.path, unjudged)
        if replay_report is not None:
            agreement = endpoint.pred_agreement({r["doc_key"]: r["extracted"] for r in rows})
            summary["replay"] = {"path": cfg.model.path, **replay_report, "pred_agreement": agreement}
        if mlflow_run is None:
            folder.write_summary(summary)
        else:
            tags = {"model": cfg.model.name, "task": cfg.task.name, "suite": cfg.suite, "git_sha": summary["git_sha"],
                    "benchmark": cfg.task.benchmark or cfg.task.name, "protocol": protocol_label(cfg),
                    "provider": cfg.model.provider, "run_id": run_id, NOTE_TAG: run_description(cfg, summary),
                    "price_book": summary["pricing"]["book"],  # and the periods billed, each with its dollars:
                    "prices": "; ".join(f"{u['price']} ×{u['requests']} ${u['cost_usd']:.4f}" for u in summary["prices_used"]),
                    **{f"dataset.{name}.revision": str(fp.revision) for name, fp in datasets.items()},
                    **{f"claim.{v['claim_id']}": v["status"] for v in summary.get("claims") or []}}
            summary["mlflow_run_id"] = mlflow_run.start(run_name(summary, settings_label(cfg)), tags, started)
            try:
                mlflow_run.log(flatten(redact(resolved)), summary_metrics(summary))
                mlflow_run.log_samples(rows)
                folder.write_summary(summary)
            except BaseException:
                mlflow_run.finish(folder.path, status="FAILED")
                raise
            mlflow_run.finish(folder.path)
            print(f"[harness] MLflow: {mlflow_run.link}")
    return RunResult(run_id, folder.path, summary)



def add_speed(summary: dict[str, Any], records: dict[tuple[str, int], list[Any]]) -> None:
    """Streamed runs: time to first token and tokens/s (p50/p90) overall and per task (scoring.speed)."""
    from harness.scoring.speed import speed_summary

    by_task: dict[str, list[Any]] = {}
    for (task, _), responses in records.items():
        by_task.setdefault(task, []).extend(responses)
    summary["speed"] = speed_summary(r for responses in by_task.values() for r in responses)
    for task, entry in summary["tasks"].items():
        entry["speed"] = speed_summary(by_task.get(task, []))


def add_run_checks(summary: dict[str, Any], cfg: RunConfig, endpoint: Endpoint, balance_before: float | None) -> None:
    """What the run learnt about its conditions: how far rate limits pushed concurrency down, what the
    provider billed against what we computed, which isolation model-written code ran under here."""
    if getattr(endpoint, "limiter", None) is not None:
        summary["endpoint"]["concurrency"] = endpoint.limiter.stats()
    if balance_before is not None:
        from harness.spend.billing import reconcile

        settled = reconcile(balance_before, read_balance(cfg), summary["cost_usd_new"], cfg.model.balance_currency)
        summary["billing"] = settled.to_dict() if settled else {"error": f"could not read {cfg.model.balance_url}"}
    if cfg.task.executes_code and not cfg.dry_run:
        from harness.sandbox import isolation

        summary["sandbox"] = isolation().to_dict()


def check_sandbox(cfg: RunConfig) -> None:
    """Model-written code runs only inside bubblewrap, or with weaker isolation by explicit opt-in."""
    from harness import sandbox

    sandbox.configure(unsafe_local=cfg.sandbox.unsafe_local)
    iso = sandbox.require()  # SandboxUnavailable names the fix
    if iso.mode == "unsafe_local":
        print(f"[harness] WARNING: {iso.notes[0]}", flush=True)


def read_balance(cfg: RunConfig) -> float | None:
    """The account balance, where the model config names a balance endpoint (not for dry runs or replays)."""
    if not cfg.model.balance_url or cfg.dry_run or cfg.model.provider == "replay":
        return None
    from harness.spend.billing import fetch_balance

    return fetch_balance(cfg.model.balance_url, resolve_api_key(cfg.model), cfg.model.balance_currency)


def check_claims(cfg: RunConfig, summary: dict[str, Any], prices: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """Verdicts for the registry's claims about this run's model and benchmark; the claims about it no run judges."""
    from harness.claims.registry import CLAIMS_DIR, load_claims
    from harness.claims.report import not_judged_by_runs
    from harness.claims.verdicts import judge
    from harness.spend.price_claims import price_matches

    claims = load_claims(Path(cfg.claims.dir) if cfg.claims.dir else CLAIMS_DIR)
    matches = price_matches(claims, cfg.model.name, prices)
    return ([v.to_dict() for v in judge(claims, cfg, summary, cfg.claims.max_ci_halfwidth, matches,
                                        cfg.claims.max_unscorable_fraction)], not_judged_by_runs(claims, cfg.model.name))


def build_summary(cfg: RunConfig, run_id: str, base_url: str, scores: list[TaskScore], rows: list[dict[str, Any]],
                  spend: SpendCounter, datasets: dict[str, DatasetFingerprint], verified: VerifiedData,
                  started: float) -> dict[str, Any]:
    """summary.json (contract keys in DESIGN.md), mlflow_run_id filled in once the MLflow run exists."""
    return {
        "run_id": run_id,
        "model": cfg.model.name,
        "endpoint": {
            "provider": cfg.model.provider,
            "model_id": cfg.model.model_id,
            "served_model": sorted({r["served_model"] for r in rows if r["served_model"]}),
            "base_url": strip_credentials(base_url),
        },
        "task": cfg.task.name,
        "suite": cfg.suite,
        "limit": cfg.limit,
        "tasks": {s.task: s.to_summary() for s in scores},
        "usage": {"requests": spend.requests_sent + spend.cache_hits, **spend.usage.to_dict(),
                  "prompt_bytes": spend.prompt_bytes,
                  # responses whose usage the server did not report (estimated) or that failed its checks
                  # (suspect: billed at the request's worst case); samples.jsonl says which and why
                  "n_estimated": spend.usage_estimated, "n_suspect": spend.usage_suspect},
        "usage_new": {"requests": spend.requests_sent, **spend.usage_new.to_dict()},
        "requests_sent": spend.requests_sent,
        # Every document answered? Failed requests and those the budget stopped are errors (not scored);
        # the same command retries exactly those.
        "complete": spend.errors == 0,
        "n_errors": sum(s.n_errors for s in scores if not s.subtasks),
        "budget_max_usd": cfg.budget.max_usd,
        "cache_hits": spend.cache_hits,
        "cost_usd": spend.cost_usd,
        "cost_usd_new": spend.cost_usd_new,
        **gpu_summary(cfg, spend),
        "wall_seconds": time.time() - started,
        "seconds_to_first_request": (spend.first_request_at - started) if spend.first_request_at else None,
        # Per task: what was evaluated (docs sha256) and where the files came from, with their hashes.
        "dataset": {name: {**verified.to_dict(), **dataclasses.asdict(fp),
                           "revision": cfg.task.dataset_revision or verified.resolved_revision}
                    for name, fp in datasets.items()},
        "versions": {
            "harness": metadata.version("harness"),
            "lm_eval": metadata.version("lm_eval"),
            "python": platform.python_version(),
        },
        "git_sha": git_sha(),
        "mlflow_run_id": None,
    }


def gpu_summary(cfg: RunConfig, spend: SpendCounter) -> dict[str, Any]:
    """Self-hosted endpoints: the GPUs' time while this run generated, at gpu_hour_usd."""
    from harness.spend.pricing import gpu_time_cost_usd

    pricing = cfg.model.pricing
    if pricing.gpu_hour_usd is None:
        return {}
    seconds = (spend.last_response_at - spend.first_request_at
               if spend.first_request_at and spend.last_response_at else 0.0)
    return {"gpu": {"gpus": pricing.gpus, "gpu_hour_usd": pricing.gpu_hour_usd, "generation_wall_seconds": seconds,
                    "gpu_hours": pricing.gpus * seconds / 3600, "wall_time_cost_usd": gpu_time_cost_usd(seconds, pricing)}}


def finish_dry_run(cfg: RunConfig, run_id: str, folder: RunFolder, estimate: Any, started: float) -> RunResult:
    """dry_run.json in the run folder and a summary-like result; nothing was sent."""
    summary = {"run_id": run_id, "dry_run": True, "model": cfg.model.name, "task": cfg.task.name,
               "limit": cfg.limit, "estimate": estimate.to_dict(), "wall_seconds": time.time() - started}
    folder.write_json("dry_run.json", summary)
    return RunResult(run_id, folder.path, summary)


def format_report(result: RunResult) -> str:
    if result.summary.get("dry_run"):
        from harness.spend.dry_run import format_dry_run

        return format_dry_run(result.summary, result.folder / "dry_run.json")
    s = result.summary
    lines = [f"[harness] run {s['run_id']} finished in {s['wall_seconds']:.1f} s"]
    for task, t in s["tasks"].items():
        lines.append(
            f"  {task}: {t['metric']} ({t['filter']}) = {t['value']:.4f} "
            f"95% CI [{t['ci95'][0]:.4f}, {t['ci95'][1]:.4f}] n={t['n']} "
            f"truncated={t['n_truncated']} extraction_failed={t['n_extraction_failed']} errors={t['n_errors']}"
        )
        if t.get("sensitivity"):
            rules = ", ".join(f"{k} {v:.4f}" for k, v in t["sensitivity"].items())
            lines.append(f"    extraction sensitivity: {rules}")
    u = s["usage"]
    lines.append(
        f"  tokens: {u['input_tokens']} in ({u['cached_input_tokens']} cached), {u['output_tokens']} out "
        f"({u['reasoning_tokens']} reasoning); requests sent {s['requests_sent']}, cache hits {s['cache_hits']}"
    )
    billed = ", ".join(f"{u['price']} ×{u['requests']}" for u in s.get("prices_used") or []) or "nothing new"
    lines.append(f"  cost: ${s['cost_usd']:.6f} in all, ${s['cost_usd_new']:.6f} newly spent at {billed} "
                 f"({s['pricing']['book']})")
    if u.get("n_estimated") or u.get("n_suspect"):
        lines.append(f"  WARNING usage: {u.get('n_estimated', 0)} response(s) without usage (estimated at 4 bytes "
                     f"per token), {u.get('n_suspect', 0)} with impossible usage (billed at the request's worst "
                     f"case); samples.jsonl usage_status / usage_note say which and why.")
    if not s["complete"]:
        lines.append(f"  INCOMPLETE: {s['n_errors']} document(s) without a response (errors.jsonl says why); "
                     f"they are not in the scores. Re-run the same command to retry only those.")
    from harness.claims.report import format_verdict_lines

    lines += format_verdict_lines(s)
    lines.append(f"  records: {result.folder}  mlflow run: {s['mlflow_run_id']}")
    return "\n".join(lines)
