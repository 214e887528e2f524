"""Spending before it happens: a hard budget (`budget.max_usd`) and the dry-run estimate.

The budget is enforced per request, before it is sent: a request goes out only if what has been spent,
plus the worst case of every request in flight, plus its own worst case stays within the limit. The
worst case of a request is its prompt bound (every token is at least one byte of UTF-8, plus the chat
template's tokens around each message) at the input price, plus max_tokens at the output price, so the
limit holds whatever the provider's tokenizer does.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.config import PricingConfig
from harness.common.exchange import ChatRequest, Usage
from harness.spend.pricing import request_cost_usd

# Chat templates wrap each message in a few special tokens (role markers, separators); 8 covers the
# templates of Llama 3, ChatML, DeepSeek and Gemma with room to spare, 16 for the generation prompt.
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_PER_REQUEST = 16
# Without history, prompt tokens are guessed at 4 bytes each (English text with BPE tokenizers).
DEFAULT_BYTES_PER_TOKEN = 4.0


def prompt_bytes(request: ChatRequest) -> int:
    return sum(len(str(m.get("content") or "").encode()) for m in request.messages)


def prompt_token_bound(request: ChatRequest) -> int:
    """An upper bound on the prompt's tokens: no tokenizer emits more tokens than bytes."""
    return prompt_bytes(request) + TEMPLATE_TOKENS_PER_MESSAGE * len(request.messages) + TEMPLATE_TOKENS_PER_REQUEST


def max_output_tokens(request: ChatRequest) -> int:
    return int(request.params.get("max_tokens") or 0)


def worst_case_cost(request: ChatRequest, pricing: PricingConfig) -> float:
    """What this request could cost at most: all prompt tokens uncached, every output token used."""
    return request_cost_usd(Usage(input_tokens=prompt_token_bound(request), output_tokens=max_output_tokens(request)),
                            pricing)


class BudgetGuard:
    """Admits a request only if spent + in-flight worst cases + its worst case <= max_usd. Once a
    request cannot fit even with nothing else in flight, the budget is exhausted and nothing more is sent."""

    def __init__(self, max_usd: float):
        self.max_usd = max_usd
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self.exhausted = False
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # made inside the running loop
            self._changed = asyncio.Condition()
        return self._changed

    async def reserve(self, worst_usd: float) -> bool:
        changed = self._condition()
        async with changed:
            while True:
                if self.exhausted:
                    return False
                if self.spent_usd + self.reserved_usd + worst_usd <= self.max_usd:
                    self.reserved_usd += worst_usd
                    return True
                if self.reserved_usd <= 0:
                    self.exhausted = True
                    changed.notify_all()
                    return False
                await changed.wait()  # a request in flight may come back cheaper than its worst case

    async def settle(self, worst_usd: float, actual_usd: float) -> None:
        changed = self._condition()
        async with changed:
            self.reserved_usd = max(0.0, self.reserved_usd - worst_usd)
            self.spent_usd += actual_usd
            changed.notify_all()


# ------------------------------------------------------------------------------------------ dry run


@dataclass(frozen=True)
class History:
    """What earlier runs of the same model and task used: the basis of the dry-run estimate."""

    runs: int
    input_tokens_per_prompt_byte: float
    output_tokens_per_request: float


def read_history(results_dir: str | Path, model: str, task: str) -> History | None:
    """Token use of earlier finished runs of this model and task (their summary.json files)."""
    prompt_bytes_total = input_tokens = output_tokens = requests = runs = 0
    for path in Path(results_dir, "runs").glob("*/summary.json"):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        usage = summary.get("usage") or {}
        if summary.get("model") != model or summary.get("task") != task or not usage.get("prompt_bytes"):
            continue
        runs += 1
        prompt_bytes_total += usage["prompt_bytes"]
        input_tokens += usage.get("input_tokens", 0)
        output_tokens += usage.get("output_tokens", 0)
        requests += usage.get("requests", 0)
    if not runs or not requests or not prompt_bytes_total:
        return None
    return History(runs, input_tokens / prompt_bytes_total, output_tokens / requests)


@dataclass
class DryRunEstimate:
    requests: int = 0
    cached: int = 0  # already in the response cache: free
    prompt_bytes: int = 0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cost_usd: float = 0.0
    worst_case_usd: float = 0.0
    basis: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DryRun(Exception):
    """Raised from inside lm-eval once every request is planned, to stop before anything is sent."""

    def __init__(self, estimate: DryRunEstimate):
        super().__init__("dry run")
        self.estimate = estimate


def estimate(planned: list[tuple[ChatRequest, bool]], pricing: PricingConfig, history: History | None) -> DryRunEstimate:
    """Tokens and dollars for the requests not in the cache. With history: prompt tokens from the
    bytes-per-token of earlier runs, output tokens their mean per request; without: 4 bytes per prompt
    token and every request using its whole max_tokens (an upper bound on output)."""
    result = DryRunEstimate()
    result.basis = (f"{history.runs} earlier run(s) of this model and task: {history.input_tokens_per_prompt_byte:.4f} "
                    f"prompt tokens per byte, {history.output_tokens_per_request:.1f} output tokens per request"
                    if history else
                    f"no earlier run of this model and task: {DEFAULT_BYTES_PER_TOKEN:g} bytes per prompt token, "
                    f"output = max_tokens (an upper bound)")
    for request, cached in planned:
        result.requests += 1
        if cached:
            result.cached += 1
            continue
        size = prompt_bytes(request)
        input_tokens = size * history.input_tokens_per_prompt_byte if history else size / DEFAULT_BYTES_PER_TOKEN
        output_tokens = history.output_tokens_per_request if history else max_output_tokens(request)
        result.prompt_bytes += size
        result.input_tokens += input_tokens
        result.output_tokens += output_tokens
        result.cost_usd += request_cost_usd(Usage(input_tokens=round(input_tokens), output_tokens=round(output_tokens)),
                                            pricing)
        result.worst_case_usd += worst_case_cost(request, pricing)
    return result
