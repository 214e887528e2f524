"""Spending before it happens: a hard budget (`budget.max_usd`) and the worst case of a request.

The budget is enforced per request, before it is sent: a request goes out only if what has been spent,
plus the worst case of every request in flight, plus its own worst case stays within the limit. The
worst case of a request is its prompt bound (every token is at least one byte of UTF-8, plus the chat
template's tokens around each message) at the input price, plus max_tokens at the output price, so the
limit holds whatever the provider's tokenizer does.
"""

from __future__ import annotations

import asyncio

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

    def try_reserve(self, worst_usd: float) -> bool:
        """Reserve without waiting (a batch is sent at once: nothing in flight will come back first)."""
        if self.exhausted or self.spent_usd + self.reserved_usd + worst_usd > self.max_usd:
            return False
        self.reserved_usd += worst_usd
        return True

    def settle_now(self, worst_usd: float, actual_usd: float) -> None:
        """`settle` outside the event loop's waiters (batch results, read in order)."""
        self.reserved_usd = max(0.0, self.reserved_usd - worst_usd)
        self.spent_usd += actual_usd

    async def settle(self, worst_usd: float, actual_usd: float) -> None:
        changed = self._condition()
        async with changed:
            self.reserved_usd = max(0.0, self.reserved_usd - worst_usd)
            self.spent_usd += actual_usd
            changed.notify_all()
