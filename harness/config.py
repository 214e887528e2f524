"""Structured config schemas, registered in Hydra's ConfigStore.

Hydra composes `conf/config.yaml` on top of `RunConfig`, so a typo in a key or a wrong type fails at
start-up with the offending key named, before any request is sent. Typing uses `typing.List/Dict`
because that is what OmegaConf validates.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key to change."""


@dataclass
class PriceWindow:
    """Prices that apply during a daily UTC time window (e.g. DeepSeek's off-peak 10:00-01:00 UTC), on
    every day or on given weekdays; a window may wrap past midnight. Null prices fall back to the base price."""

    name: str = ""
    start_utc: str = MISSING  # "HH:MM" (or "HH:MM:SS")
    end_utc: str = MISSING    # "HH:MM", exclusive; "24:00" = midnight at the end of the day
    # UTC weekdays the window applies on (mon, tue, ..., sun), judged at the moment billed; [] = every day.
    days: List[str] = field(default_factory=list)
    input_per_mtok: Optional[float] = None
    cached_input_per_mtok: Optional[float] = None
    output_per_mtok: Optional[float] = None


@dataclass
class PricingConfig:
    """List prices in USD per 1M tokens, with where they came from."""

    input_per_mtok: float = 0.0
    # Price for prompt tokens served from the provider's cache; None means "same as input".
    cached_input_per_mtok: Optional[float] = None
    output_per_mtok: float = 0.0
    # Price for prompt tokens written to the provider's cache (Anthropic bills 5-minute cache writes
    # at 1.25x input); None means "same as input".
    cache_write_per_mtok: Optional[float] = None
    # Time-of-day prices; a request is billed at the window its response completed in (UTC).
    windows: List[PriceWindow] = field(default_factory=list)
    # Self-hosted endpoints: dollars per GPU-hour and GPUs serving the model. A response then costs its
    # share of the GPUs' time (latency x gpus x gpu_hour_usd / 3600 / model.concurrency), and the run
    # also reports generation wall time x gpus x gpu_hour_usd, so API and self-hosted runs compare in dollars.
    gpu_hour_usd: Optional[float] = None
    gpus: int = 1
    source: str = ""
    effective_date: str = ""
    # The price book's model id (conf/prices/*.yaml): dated periods with their sources, billed by the
    # time each response completed. null = the inline prices above (self-hosted and custom endpoints).
    book: Optional[str] = None
    # Another folder of price-book files; null = conf/prices/.
    book_dir: Optional[str] = None


@dataclass
class GenerationConfig:
    """Model-level generation defaults; they override what a task asks for."""

    temperature: Optional[float] = 0.0
    top_p: Optional[float] = None
    seed: Optional[int] = None
    # With task.repeats=k, repeat r sends seed (seed or 0) + r, so each repeat is its own reproducible
    # draw where the API takes a seed (OpenAI-compatible servers; Anthropic has none). Set false for a
    # server that rejects `seed`; repeats stay separate answers either way.
    seed_per_repeat: bool = True
    # Overrides the task's max_gen_toks (lm-eval's default of 256 truncates reasoning models).
    max_tokens: Optional[int] = None
    reasoning_effort: Optional[str] = None
    # Anthropic extended thinking with a fixed budget: sends {"type": "enabled", "budget_tokens": N}
    # (N >= 1024 and < max_tokens). Claude Opus 4.7 and later reject budgets (400): use
    # model.thinking=true there, which asks for adaptive thinking.
    thinking_budget_tokens: Optional[int] = None
    # Provider-specific request fields, sent as they are (e.g. DeepSeek's {"thinking": {...}}).
    extra_body: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ServerConfig:
    """A server the harness starts itself, serves the model from, and stops on exit."""

    # Launcher name in harness.endpoints.local_server.LAUNCHERS (llama_cpp, vllm, command).
    launcher: str = "llama_cpp"
    # For llama_cpp: a GGUF path, or "pkg:<module>/<file>" to find a file inside an installed package.
    model_file: str = ""
    # For the generic "command" launcher: argv with {port} and {host} placeholders.
    command: List[str] = field(default_factory=list)
    # Appended to the launcher's argv as they are. For vllm they are part of the cache identity (a flag
    # such as --dtype, --quantization, --revision or --tokenizer-mode changes the answers); flags the
    # vllm launcher sets itself (--host, --port, --served-model-name and the fields below) are refused.
    extra_args: List[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    startup_timeout_s: float = 180.0
    # On exit the server's whole process group gets SIGTERM, then SIGKILL after this many seconds.
    stop_grace_s: float = 15.0

    # --- vllm launcher: `<executable> serve <weights> --host H --port P --served-model-name <model_id>`
    # The vLLM CLI: a name looked up on PATH, or a path (e.g. a venv's bin/vllm).
    executable: str = "vllm"
    # Hub repo id or local path of the weights to serve; null = model.model_id. The served name (what
    # requests ask for) is always model.model_id, passed as --served-model-name.
    weights: Optional[str] = None
    # Each is passed as its vLLM flag only when set; null = vLLM's default.
    tensor_parallel_size: Optional[int] = None  # --tensor-parallel-size (GPUs per replica)
    max_model_len: Optional[int] = None  # --max-model-len (context length; default: the model's own)
    reasoning_parser: Optional[str] = None  # --reasoning-parser (deepseek_r1, deepseek_v3, deepseek_v4, qwen3, ...)
    gpu_memory_utilization: Optional[float] = None  # --gpu-memory-utilization (fraction, vLLM default 0.9)


@dataclass
class ModelFacts:
    """Published dates that decide which benchmark items the model could have seen in training
    (ISO dates, as precise as the source: "2026-04-24" or "2025-01"); null = not published."""

    release_date: Optional[str] = None
    knowledge_cutoff: Optional[str] = None
    # Where each date is stated (URL or document, with the words), so a reader can check it.
    source: str = ""
    notes: str = ""


@dataclass
class ModelConfig:
    """One endpoint: who serves it, what it is called there, how to authenticate, what it costs."""

    name: str = MISSING
    provider: str = "openai_compat"
    base_url: Optional[str] = None
    model_id: str = MISSING
    # Name of the environment variable holding the key; the key itself never enters the config.
    api_key_env: Optional[str] = None
    # True for servers that accept any key unless started with one (vLLM, llama.cpp).
    api_key_optional: bool = False
    # DeepSeek-style thinking toggle: true/false sends {"thinking": {"type": enabled/disabled}}.
    thinking: Optional[bool] = None
    concurrency: int = 8
    max_retries: int = 6
    # Slow-down answers (429, 503, 529) are not failures: a request waits as the server asks (and
    # backs off), with fewer requests in flight, for up to this long before it is recorded as an error.
    rate_limit_patience_s: float = 300.0
    request_timeout_s: float = 120.0  # non-streamed: the longest silence while waiting for the answer
    # Streamed responses (server-sent events with stream_options.include_usage): time to first token,
    # tokens/s and inter-token gaps per response; a stalled stream is cut at the idle timeout.
    stream: bool = False
    connect_timeout_s: float = 10.0       # to open the connection
    first_token_timeout_s: float = 120.0  # streamed: request sent -> first chunk (long prompts, queues)
    idle_timeout_s: float = 60.0          # streamed: between chunks (keep-alive comments are not progress)
    attempt_timeout_s: float = 1800.0     # one attempt, start to end, however the bytes trickle in
    # How many stop sequences the endpoint accepts (OpenAI: 4); 0 = none, applied client-side.
    max_stop_sequences: int = 4
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    facts: ModelFacts = field(default_factory=ModelFacts)
    server: Optional[ServerConfig] = None
    # Where the provider reports the account balance (DeepSeek: https://api.deepseek.com/user/balance):
    # read before and after the run to reconcile computed against billed cost. null = no reconciliation.
    balance_url: Optional[str] = None
    balance_currency: str = "USD"
    # OpenAI / Anthropic: send the run as one batch (OpenAI Batch API, Anthropic Message Batches), billed
    # at the book's batch discount; answers may take up to the completion window. The batch id is saved
    # under results/batches/ at once, so an interrupted run resumes by polling and never re-submits.
    batch: bool = False
    batch_poll_s: float = 30.0           # how often the batch's status is read
    batch_completion_window: str = "24h"  # OpenAI's completion_window (the only value it accepts)
    batch_retry_online: bool = True      # items the batch failed or let expire are sent online
    # For provider "replay": the recorded responses to score (samples.jsonl or an MMLU-Pro result JSON).
    path: Optional[str] = None
    notes: str = ""


@dataclass
class TaskConfig:
    """Maps a harness task name onto an lm-eval task or group and its data."""

    name: str = MISSING
    lm_eval_task: str = MISSING
    # The benchmark as claims name it ("MMLU-Pro", "GSM8K"): which published claims this task checks.
    benchmark: Optional[str] = None
    # Folders to index for lm-eval tasks: "lm_eval:<subdir>" (inside lm-eval) or a path under tasks/.
    task_dirs: List[str] = field(default_factory=list)
    # The dataset's hub repository id, for the records (the data may come from a local copy).
    dataset_repo: Optional[str] = None
    # Local folder holding the dataset in the hub's file layout (README.md configs + data files);
    # when null the data comes from the mirror (data.mirror) or the hub at dataset_revision.
    dataset_path: Optional[str] = None
    # The hub commit the task is pinned to, the subset name, and {relative file path: sha256} of the
    # data files (checked before the run; see harness/benchmarks/data.py). null = not pinned, hashes recorded only
    # (override with task.dataset_sha256=null to run a copy of your own).
    dataset_revision: Optional[str] = None
    dataset_config: Optional[str] = None
    dataset_sha256: Optional[Dict[str, str]] = None
    num_fewshot: Optional[int] = None
    # For a task whose lm-eval YAML loads its own data (`custom_dataset`, e.g. LiveCodeBench): the
    # loader's keyword arguments (release, date window, difficulty, sample size, ...), merged over the
    # YAML's dataset_kwargs, with data_dir = the verified local copy of the dataset.
    loader_kwargs: Optional[Dict[str, Any]] = None
    # Samples drawn per document (lm-eval `repeats`), e.g. 10 for pass@1 averaged over 10 samples.
    repeats: Optional[int] = None
    # The task runs model-written code (in harness.sandbox); the run records which isolation held.
    executes_code: bool = False
    apply_chat_template: bool = True
    fewshot_as_multiturn: bool = True
    # Which lm-eval (filter, metric) is the headline score.
    metric: str = "exact_match"
    filter: str = "flexible-extract"
    # The task's own answer rule (a name in harness.scoring.extract.EXTRACTORS): per-sample extracted answer and
    # stage in samples.jsonl. Null: the lm-eval filter's output (lm-eval's own tasks).
    extractor: Optional[str] = None
    # "gsm8k" or "mmlu_pro": scores the same outputs with strict / official / lenient extraction
    # (harness.scoring.extract.SENSITIVITY_RULES) and reports the spread. Null: no sensitivity report.
    answer_family: Optional[str] = None


@dataclass
class TrackingConfig:
    enabled: bool = True
    tracking_uri: str = MISSING
    experiment: str = "harness"


@dataclass
class DataConfig:
    # A folder holding <repo_id>/ in the hub's layout; null: $HARNESS_DATA_MIRROR, else the hub.
    mirror: Optional[str] = None
    # Run even if the files differ from task.dataset_sha256 (the mismatch is recorded in summary.json).
    allow_hash_mismatch: bool = False


@dataclass
class ClaimsConfig:
    enabled: bool = True
    # Folder of claim files; null = the registry in conf/claims/.
    dir: Optional[str] = None
    # An interval including the claim is "consistent" only if its half-width is at most this (a
    # fraction: 0.10 = 10 points); wider is "underpowered".
    max_ci_halfwidth: float = 0.10
    # A score verdict is "inconclusive" when counting the unscorable items (truncated, not extracted,
    # failed) all right instead of all wrong would change it; this also makes it inconclusive once they
    # pass a fixed fraction of the items (0.05 = 5%). null = only the first rule.
    max_unscorable_fraction: Optional[float] = None


@dataclass
class CacheConfig:
    enabled: bool = True
    path: str = MISSING


@dataclass
class BudgetConfig:
    # No request is sent that could push spent + in-flight worst case past this (USD); null = no limit.
    max_usd: Optional[float] = None


@dataclass
class SandboxConfig:
    # Run model-written code WITHOUT bubblewrap (only rlimits, a temp dir and an empty environment):
    # for machines where bwrap cannot create namespaces, e.g. inside a throwaway VM. Recorded in
    # summary.json `sandbox` and printed; never chosen silently.
    unsafe_local: bool = False


@dataclass
class ScheduleConfig:
    # Wait for the next window of the price book whose name contains `window` (DeepSeek's off-peak
    # discount) before sending, showing when it opens. Responses after it closes are billed at the
    # price then in force (piecewise).
    off_peak: bool = False
    window: str = "off-peak"


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    task: TaskConfig = MISSING
    tracking: TrackingConfig = MISSING
    cache: CacheConfig = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    claims: ClaimsConfig = field(default_factory=ClaimsConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # Plan every request, estimate tokens and dollars, send nothing (writes dry_run.json).
    dry_run: bool = False
    suite: str = ""
    limit: Optional[int] = None
    run_id: Optional[str] = None
    results_dir: str = "results"
    progress: bool = True


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)


def unknown_keys(node: Any, schema: type = RunConfig, prefix: str = "") -> list[str]:
    """Keys in a composed config that the schema does not know, each with the nearest known key.
    Hydra refuses a typo'd override unless it is written with `+`, and then adds the key to the config,
    where nothing reads it: the run would go on with the setting silently ignored."""
    from omegaconf import DictConfig

    if not isinstance(node, DictConfig):
        return []
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    found = []
    for key in node.keys():
        name = f"{prefix}{key}"
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            found.append(f"{name}" + (f" (did you mean {prefix}{near[0]}?)" if near else ""))
            continue
        kind = hints[key]
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # Optional[X] -> X
        if dataclasses.is_dataclass(kind):
            found += unknown_keys(node._get_node(key), kind, f"{name}.")
    return found


def unknown_override_keys(overrides: list[str]) -> list[str]:
    """The command line's `key=value` overrides (not `+key`, `~key`, `hydra.*` or flags) whose key no
    schema knows, each with the nearest known key: checked before Hydra, whose own message for these
    suggests adding `+` (which would make the typo a key that nothing reads)."""
    found = []
    for override in overrides:
        if override.startswith(("-", "+", "~")) or "=" not in override:
            continue
        path = override.split("=", 1)[0].split(".")
        if path[0] == "hydra":
            continue
        schema: type | None = RunConfig
        for depth, key in enumerate(path):
            fields = {f.name for f in dataclasses.fields(schema)} if schema else set()
            if key not in fields:
                near = difflib.get_close_matches(key, sorted(fields), n=1)
                prefix = ".".join(path[:depth])
                nearest = f"{prefix + '.' if prefix else ''}{near[0]}" if near else ""
                found.append(".".join(path[:depth + 1]) + (f" (did you mean {nearest}?)" if nearest else ""))
                break
            kind = typing.get_type_hints(schema)[key]
            kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
            if not dataclasses.is_dataclass(kind):
                break  # a value, or a free-form mapping (extra_body, loader_kwargs): nothing more to check
            schema = kind
    return found


def check_known_keys(raw_cfg: Any) -> None:
    """ConfigError naming every key no schema knows (a typo, or a `+key` nothing reads)."""
    raise_unknown(unknown_keys(raw_cfg))


def raise_unknown(unknown: list[str]) -> None:
    if unknown:
        raise ConfigError(
            f"unknown config key{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. Nothing reads "
            f"{'them' if len(unknown) > 1 else 'it'}, so the run would silently ignore the setting; fix the name "
            f"(the schemas are in harness/config.py; model.generation.extra_body takes provider-specific fields).")
