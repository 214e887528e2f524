"""The lm-eval `LM` that drives our endpoints: lm-eval builds prompts and scores; we send every
generation request of a task concurrently, through the response cache, and keep each response's
usage and cost attached to its (task, doc) so records can be written per sample."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lm_eval.api.model import LM
from tqdm.auto import tqdm

from harness.spend.budget import BudgetGuard, prompt_bytes, prompt_token_bound, worst_case_cost
from harness.spend.dry_run import DryRun, History, estimate
from harness.endpoints.batch import batch_refusal
from harness.endpoints.cache import ResponseCache, cache_key
from harness.config import ConfigError, ModelConfig
from harness.common.doc_key import doc_key
from harness.common.exchange import ChatRequest, Completion, ResponseRecord, SampleError, Usage
from harness.common.gc_policy import requests_phase
from harness.endpoints.base import Endpoint, EndpointError, RequestFailed
from harness.spend.price_book import PriceLedger, PriceSchedule, inline_schedule
from harness.spend.pricing import gpu_time_cost_usd

LM_EVAL_DEFAULT_MAX_GEN_TOKS = 256
# When this many requests have failed and none has succeeded, the cause is systematic (a parameter
# the server refuses, a model it does not serve): stop instead of recording an error per document.
FAIL_FAST_AFTER = 10
WAITING_SHOWN_AFTER_S = 10.0  # the progress line names requests in flight once the oldest waited this long


@dataclass
class SpendCounter:
    """Running totals for progress and the summary: what the scores rest on vs what this run paid."""

    requests_sent: int = 0
    cache_hits: int = 0
    usage: Usage = Usage()
    usage_new: Usage = Usage()
    cost_usd: float = 0.0
    cost_usd_new: float = 0.0
    first_request_at: float | None = None
    last_response_at: float | None = None
    prompt_bytes: int = 0  # UTF-8 bytes of the prompts answered: with usage, the basis of dry-run estimates
    errors: int = 0
    usage_estimated: int = 0  # responses without usage from the server (harness.endpoints.usage_checks)
    usage_suspect: int = 0    # responses whose usage failed its checks: billed at the worst case

    def add(self, record: ResponseRecord, request_prompt_bytes: int = 0) -> None:
        self.prompt_bytes += request_prompt_bytes
        self.usage_estimated += record.completion.usage_status == "estimated"
        self.usage_suspect += record.completion.usage_status == "suspect"
        self.usage += record.completion.usage
        self.cost_usd += record.cost_usd
        if record.from_cache:
            self.cache_hits += 1
        else:
            self.requests_sent += 1
            self.usage_new += record.completion.usage
            self.cost_usd_new += record.cost_usd


def generation_params(model: ModelConfig, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Request parameters: the model config governs; the task supplies max_gen_toks if the model
    does not. Temperature null in the model config means "do not send one" (reasoning APIs reject it)."""
    g = model.generation
    extra_body = dict(g.extra_body)
    if model.thinking is not None:
        extra_body["thinking"] = {"type": "enabled" if model.thinking else "disabled"}
    params = {
        "max_tokens": g.max_tokens or gen_kwargs.get("max_gen_toks") or LM_EVAL_DEFAULT_MAX_GEN_TOKS,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "seed": g.seed,
        "reasoning_effort": g.reasoning_effort,
        "extra_body": extra_body or None,
    }
    return {k: v for k, v in params.items() if v is not None}


class EndpointLM(LM):
    def __init__(
        self,
        endpoint: Endpoint,
        model: ModelConfig,
        cache: ResponseCache | None,
        on_response: Callable[[ResponseRecord], None] = lambda record: None,
        show_progress: bool = True,
        on_error: Callable[[SampleError], None] = lambda error: None,
        budget_usd: float | None = None,
        dry_run: bool = False,
        history: History | None = None,
        prices: PriceSchedule | None = None,
        off_peak_window: str = "off-peak",
        batch_dir: str | None = None,
    ):
        super().__init__()
        self.endpoint = endpoint
        self.model = model
        self.cache = cache
        self.on_response = on_response
        self.on_error = on_error
        self.show_progress = show_progress
        self.records: dict[tuple[str, int], list[ResponseRecord]] = defaultdict(list)
        self.errors: dict[tuple[str, int], list[SampleError]] = defaultdict(list)
        self.spend = SpendCounter()
        self.budget = BudgetGuard(budget_usd) if budget_usd is not None else None
        self.dry_run = dry_run
        self.history = history
        self.prices = prices or inline_schedule(model.pricing)
        self.ledger = PriceLedger()  # what was bought at which price: the piecewise bill
        self.off_peak_window = off_peak_window
        self.batch_dir = batch_dir
        self._bought_in_batch: set[str] = set()  # cache keys answered by a batch during this run
        self._batch_failed: dict[str, RequestFailed] = {}  # not retried online (model.batch_retry_online=false)
        self._chat_applied = False

    # -- lm-eval chat support: messages travel as JSON and are sent as chat messages, not a string
    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        self._chat_applied = True
        return json.dumps(chat_history, ensure_ascii=False)

    @property
    def tokenizer_name(self) -> str:
        return self.model.model_id

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return None  # the server applies its own template

    def loglikelihood(self, requests):
        raise NotImplementedError(self._no_logprobs("loglikelihood"))

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError(self._no_logprobs("loglikelihood_rolling"))

    def _no_logprobs(self, kind: str) -> str:
        return (
            f"this task asks for {kind} scores, but model '{self.model.name}' is a chat endpoint, which "
            f"returns generated text, not the log-probabilities of given continuations. Use a generative "
            f"(generate_until) variant of the task, e.g. a chain-of-thought one."
        )

    def _chat_request(self, context: str, gen_kwargs: dict[str, Any]) -> ChatRequest:
        """lm-eval makes a document one user message. A task whose documents ARE conversations (MRCR) says so
        in its YAML generation_kwargs, `harness_context: chat_messages` (a task setting: no prompt text can set
        it): its one user message is then a JSON list of {role, content}, sent as those messages, in order."""
        messages = json.loads(context) if self._chat_applied else [{"role": "user", "content": context}]
        mode = gen_kwargs.pop("harness_context", None)
        if mode is not None:
            if mode != "chat_messages" or len(messages) != 1 or messages[0].get("role") != "user":
                raise ConfigError(f"generation_kwargs harness_context={mode!r} needs the value chat_messages and a "
                                  f"task without system message or few-shot turns (got {len(messages)} messages)")
            try:
                listed = json.loads(messages[0]["content"])
            except ValueError:
                listed = None
            if not (isinstance(listed, list) and listed and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                                and m.get("role") in ("system", "developer", "user", "assistant")
                                                                for m in listed)):
                raise ConfigError("harness_context=chat_messages: the document's text is not a JSON list of "
                                  "{role, content} chat messages")
            messages = [{"role": m["role"], "content": m["content"]} for m in listed]
        until = gen_kwargs.get("until") or []
        if isinstance(until, str):
            until = [until]
        return ChatRequest(
            messages=tuple(messages),
            model_id=self.model.model_id,
            params=generation_params(self.model, gen_kwargs),
            stop=tuple(until),
        )

    def _repeat_request(self, request: ChatRequest, repeat: int) -> ChatRequest:
        """Repeat r of an item (task.repeats): its own answer (own cache key), with seed (seed or 0) + r where
        the model config allows (generation.seed_per_repeat), so repeats are separate reproducible draws."""
        params = request.params
        if self.model.generation.seed_per_repeat:
            params = {**params, "seed": (self.model.generation.seed or 0) + repeat}
        return dataclasses.replace(request, params=params, sample=repeat)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        repeat_counter: dict[tuple[str, int], int] = defaultdict(int)
        planned = []
        for instance in requests:
            context, gen_kwargs = instance.args
            slot = (instance.task_name, instance.doc_id)
            planned.append((slot, doc_key(instance.doc), repeat_counter[slot],
                            self._chat_request(context, dict(gen_kwargs))))
            repeat_counter[slot] += 1
        planned = [(slot, key, repeat, self._repeat_request(request, repeat) if repeat_counter[slot] > 1 else request)
                   for slot, key, repeat, request in planned]
        if self.dry_run:
            raise DryRun(estimate([(request, self._cached(request)) for *_, request in planned],
                                  self.prices, self.history, self.model.concurrency, window=self.off_peak_window,
                                  batch_refusal=batch_refusal(self.model)))
        with requests_phase():
            return asyncio.run(self._generate_all(planned, disable_tqdm))

    def response_cost(self, completion: Completion, at: dt.datetime | None = None, batch: bool = False) -> float:
        """The book's price in force when the response completed (its period, time-of-day window, batch
        discount), counted into the ledger; self-hosted: plus its share of GPU time."""
        quote = self.prices.quote(completion.usage, at or dt.datetime.now(dt.timezone.utc), batch=batch)
        self.ledger.add(quote, completion.usage)
        gpu_seconds = completion.latency_s / max(1, self.model.concurrency)
        return quote.cost_usd + gpu_time_cost_usd(gpu_seconds, self.model.pricing)

    def price_records(self) -> dict[str, Any]:
        """For summary.json: the book's periods in force while this run bought answers, the piecewise bill
        (what was bought at which period · window · batch), and how long generation held the slots."""
        spend = self.spend
        start, end = (dt.datetime.fromtimestamp(t, dt.timezone.utc) if t else None
                      for t in (spend.first_request_at, spend.last_response_at))
        seconds = (spend.last_response_at - spend.first_request_at) if start and end else None
        return {"pricing": self.prices.describe(start, end) if start else self.prices.describe(),
                "prices_used": self.ledger.to_list(),
                "generation": {"seconds": seconds, "requests_sent": spend.requests_sent,
                               "concurrency": self.model.concurrency, "batch": self.model.batch}}

    def worst_usd(self, request: ChatRequest) -> float:
        """What the request could cost at most: its prompt bound and max_tokens at the highest rates the
        book has from now on (a period that ended cannot bill it)."""
        return worst_case_cost(request, self.prices.worst_rates(prompt_token_bound(request),
                                                                dt.datetime.now(dt.timezone.utc)))

    def _cached(self, request: ChatRequest) -> bool:
        return self.cache is not None and self.cache.get(cache_key(self.endpoint.identity, request)) is not None

    async def _send(self, request: ChatRequest, key_of_doc: str) -> tuple[Completion, float]:
        """One request through the budget: admitted only if its worst case fits, settled at its cost.
        Returns the completion and its cost (priced once, at the time it completed)."""
        if self.budget is None:
            completion = await self.endpoint.complete(request, doc_key=key_of_doc)
            return completion, self.response_cost(completion)
        worst = self.worst_usd(request)
        if not await self.budget.reserve(worst):
            raise RequestFailed(
                f"not sent: budget.max_usd={self.budget.max_usd:g} would be exceeded (spent "
                f"${self.budget.spent_usd:.4f}; this request could cost up to ${worst:.4f}). Raise budget.max_usd "
                f"and re-run the same command: what was answered is cached.", kind="budget")
        actual = 0.0
        try:
            completion = await self.endpoint.complete(request, doc_key=key_of_doc)
            actual = self.response_cost(completion)
            return completion, actual
        except RequestFailed:
            raise  # failed requests are not billed by the providers we support
        except BaseException:
            actual = worst  # interrupted mid-flight: assume the worst was billed
            raise
        finally:
            await self.budget.settle(worst, actual)

    async def _batch_phase(self, planned, disable_tqdm: bool) -> None:
        """model.batch: every uncached request through the provider's batch API, answers into the cache
        at the batch price; what the batch failed is left for the online pass (or recorded as failed)."""
        from harness.endpoints.batch import BatchJournal, BatchRunner
        from harness.endpoints.batch_apis import batch_api

        pending: dict[str, ChatRequest] = {}
        for *_, request in planned:
            key = cache_key(self.endpoint.identity, request)
            if key not in pending and (self.cache is None or self.cache.get(key) is None):
                pending[key] = request
        if not pending:
            return
        discount = self.prices.period_at(dt.datetime.now(dt.timezone.utc)).batch_discount or 0.0
        reserved: dict[str, float] = {}  # key -> worst case at the batch price, held until its answer is read

        def admit(key: str) -> bool:
            """The budget, for a request about to go into a new batch (all of a batch is sent at once)."""
            if self.budget is None:
                return True
            request = pending[key]
            worst = self.worst_usd(request) * (1.0 - discount)
            if not self.budget.try_reserve(worst):
                return False
            reserved[key] = worst
            return True

        self.spend.first_request_at = self.spend.first_request_at or time.time()

        def on_result(key: str, outcome: Completion | RequestFailed, completed_at: float) -> None:
            if isinstance(outcome, RequestFailed):
                if self.budget is not None and key in reserved:
                    self.budget.settle_now(reserved.pop(key), 0.0)
                if outcome.kind == "budget" or not self.model.batch_retry_online:
                    self._batch_failed[key] = outcome
                return
            cost = self.response_cost(outcome, dt.datetime.fromtimestamp(completed_at, dt.timezone.utc), batch=True)
            if self.budget is not None:  # answers of an earlier run's batch were paid for: counted, never refused
                self.budget.settle_now(reserved.pop(key, 0.0), cost)
            assert self.cache is not None  # check_batch_config: batch mode needs the cache
            self.cache.put(key, pending[key], outcome, cost)
            self._bought_in_batch.add(key)
            self.spend.last_response_at = time.time()

        api = batch_api(self.model, getattr(self.endpoint, "base_url", None))
        try:
            await BatchRunner(api, BatchJournal(self.batch_dir or "results/batches", self.endpoint.identity),
                              self.model.batch_poll_s, show_progress=self.show_progress and not disable_tqdm
                              ).run(pending, on_result, admit)
        finally:
            await api.aclose()

    async def _generate_all(self, planned, disable_tqdm: bool) -> list[str]:
        if self.model.batch:
            await self._batch_phase(planned, disable_tqdm)
        texts: list[str] = [""] * len(planned)
        bar = tqdm(total=len(planned), desc=f"{self.model.name}", unit="req",
                   disable=disable_tqdm or not self.show_progress)
        sent_at: dict[int, float] = {}  # requests on their way (not cache hits): when each was sent
        status = {"line": "", "waiting": ""}

        async def watch() -> None:
            """Every 2 s (not per response: the oldest is a scan of everything in flight), say whether
            requests have been waiting long, so a slow or silent server is visible."""
            while True:
                await asyncio.sleep(2.0)
                oldest = time.monotonic() - min(sent_at.values()) if sent_at else 0.0
                status["waiting"] = (f", {len(sent_at)} in flight, oldest {oldest:.0f} s"
                                     if oldest >= WAITING_SHOWN_AFTER_S else "")
                bar.set_postfix_str(status["line"] + status["waiting"], refresh=bool(status["waiting"]))

        def record_error(slot: tuple[str, int], key_of_doc: str, repeat: int, key: str, exc: RequestFailed) -> None:
            error = SampleError(slot[0], slot[1], key_of_doc, repeat, key, exc.kind, exc.status, str(exc))
            self.errors[slot].append(error)
            self.spend.errors += 1
            self.on_error(error)
            bar.update(1)

        async def one(index: int, slot: tuple[str, int], key_of_doc: str, repeat: int, request: ChatRequest) -> None:
            key = cache_key(self.endpoint.identity, request)
            hit = self.cache.get(key) if self.cache is not None else None
            bought_now = key in self._bought_in_batch
            if key in self._batch_failed:
                record_error(slot, key_of_doc, repeat, key, self._batch_failed[key])
                return
            if hit is not None:
                completion, cost = hit
                self._bought_in_batch.discard(key)  # a repeat of the same request is a cache hit
            else:
                if self.spend.first_request_at is None:
                    self.spend.first_request_at = time.time()
                sent_at[index] = time.monotonic()
                try:
                    completion, cost = await self._send(request, key_of_doc)
                except RequestFailed as exc:
                    record_error(slot, key_of_doc, repeat, key, exc)
                    if exc.kind != "budget" and self.spend.requests_sent == 0 and self.spend.errors >= FAIL_FAST_AFTER:
                        raise EndpointError(
                            f"the first {self.spend.errors} requests all failed and none succeeded, so the run stops "
                            f"(errors.jsonl has each one). The last: {exc}") from None
                    return
                finally:
                    sent_at.pop(index, None)
                self.spend.last_response_at = time.time()
                if self.cache is not None:
                    self.cache.put(key, request, completion, cost)
            record = ResponseRecord(slot[0], slot[1], key_of_doc, repeat, key, completion, cost,
                                    from_cache=hit is not None and not bought_now)
            self.records[slot].append(record)
            self.spend.add(record, prompt_bytes(request))
            self.on_response(record)
            texts[index] = completion.text
            bar.update(1)
            status["line"] = (
                f"in {self.spend.usage.input_tokens} out {self.spend.usage.output_tokens} tok, "
                f"${self.spend.cost_usd_new:.4f} new / ${self.spend.cost_usd:.4f} total, "
                f"{self.spend.cache_hits} cached" + (f", {self.spend.errors} errors" if self.spend.errors else ""))
            if not sent_at:  # nothing left in flight: the watcher's last note no longer holds
                status["waiting"] = ""
            bar.set_postfix_str(status["line"] + status["waiting"], refresh=False)

        jobs = [asyncio.create_task(one(i, *plan)) for i, plan in enumerate(planned)]
        watcher = asyncio.create_task(watch())
        try:
            await asyncio.gather(*jobs)
        except BaseException:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            raise
        finally:
            watcher.cancel()
            bar.close()
            await self.endpoint.aclose()
        return texts
