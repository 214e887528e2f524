"""`model.batch=true`: a run's uncached requests go out as one provider batch, billed at the book's batch
discount, and come back into the same response cache as online answers.

Nothing is submitted twice. A journal file per batch (results/batches/<tag>.json) is written before the
batch is created (state "submitting", with every custom_id and the cache key it stands for) and again
the moment the provider returns the batch id. A run killed at any point and started again finds its
open journals, polls those batches and reads their results; only requests no open journal covers are
submitted anew. (OpenAI batches carry the journal's tag in their metadata, so even a kill between the
create call and the journal write is found; Anthropic's carry no metadata, so that one window of a few
milliseconds can submit again.) Results go to the cache row by row as they are read, so a kill while
reading loses nothing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from harness.common.exchange import ChatRequest, Completion
from harness.config import ConfigError, ModelConfig, RunConfig
from harness.endpoints.base import EndpointError, RequestFailed
from harness.endpoints.batch_apis import BATCH_PROVIDERS, BatchAPI, BatchState, new_tag
from harness.spend.price_book import PriceSchedule

# Per batch at most (OpenAI: 50,000 requests and 200 MB of input; Anthropic: 100,000 requests, 256 MB).
MAX_ITEMS_PER_BATCH = 50_000
# A batch still open this long after submission (24 h window + an hour's grace) stops the run, journal kept.
GIVE_UP_AFTER_S = 25 * 3600.0


def check_spending_config(cfg: RunConfig, prices: PriceSchedule) -> None:
    """Before anything is sent, and in a dry run too (a dry run that passes must mean the run can start):
    batch mode and off-peak scheduling that cannot work are refused, a paid API without prices is named."""
    now = dt.datetime.now(dt.timezone.utc)
    check_batch_config(cfg.model, cfg.cache.enabled, prices.period_at(now).batch_discount)
    if cfg.schedule.off_peak and prices.next_window_start(cfg.schedule.window, now) is None:
        raise ConfigError(f"schedule.off_peak=true, but the price book has no '{cfg.schedule.window}' window for "
                          f"{prices.model}: run without it (schedule.off_peak=false)")
    pricing = cfg.model.pricing
    if (not pricing.book and not (pricing.input_per_mtok or pricing.output_per_mtok or pricing.gpu_hour_usd)
            and cfg.model.api_key_env and not cfg.model.api_key_optional):
        print(f"[harness] warning: model '{cfg.model.name}' is reached with a key ({cfg.model.api_key_env}) but has no "
              f"prices (model.pricing.book is null and no inline prices): its costs show as $0 and budget.max_usd "
              f"cannot stop anything. Set model.pricing.book or model.pricing.input_per_mtok / output_per_mtok.",
              file=sys.stderr, flush=True)


def batch_refusal(model: ModelConfig) -> str | None:
    """Why this model cannot go through a batch API here (None: it can)."""
    if model.provider not in BATCH_PROVIDERS:
        return (f"model.batch=true sends through {' or '.join(BATCH_PROVIDERS.values())}; model "
                f"'{model.name}' is provider {model.provider!r}")
    return None


def check_batch_config(model: ModelConfig, cache_enabled: bool, batch_discount: float | None) -> None:
    """Refuse what cannot work before anything is sent, naming the fix."""
    if not model.batch:
        return
    if batch_refusal(model):
        raise ConfigError(f"{batch_refusal(model)}. Use model.batch=false.")
    if not cache_enabled:
        raise ConfigError("model.batch=true needs the response cache (answers arrive long after they are asked "
                          "for, and a resumed run reads them from there): set cache.enabled=true")
    if batch_discount is None:
        raise ConfigError(f"model.batch=true, but the price book has no batch price for model '{model.name}' now; "
                          f"add batch_discount to its period in conf/prices/ or use model.batch=false")


class BatchJournal:
    """One JSON file per batch, replaced atomically: what was submitted and where it stands."""

    def __init__(self, folder: str | Path, identity: str):
        self.folder = Path(folder)
        self.identity = identity

    def open_entries(self) -> list[dict[str, Any]]:
        entries = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if entry.get("endpoint") == self.identity and entry.get("state") != "read":
                entries.append(entry)
        return entries

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One run at a time uses the journals (two copies of a command would both submit, or both count
        the same batch's spend). An flock: the kernel drops it when the holder dies, even by kill -9."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise EndpointError(f"another run is sending or polling batches from {self.folder} "
                                    f"({handle.read().strip() or 'pid unknown'}); wait for it to finish, or give this "
                                    f"run another results_dir") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write(self, entry: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{entry['tag']}.json"
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w") as handle:
            json.dump(entry, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)


OnResult = Callable[[str, "Completion | RequestFailed", float], None]  # cache key, outcome, completed at (unix s)


class BatchRunner:
    def __init__(self, api: BatchAPI, journal: BatchJournal, poll_s: float, show_progress: bool = True):
        self.api = api
        self.journal = journal
        self.poll_s = poll_s
        self.show_progress = show_progress

    async def run(self, pending: dict[str, ChatRequest], on_result: OnResult,
                  admit: Callable[[str], bool] = lambda key: True) -> None:
        """Every request in `pending` (cache key -> request) answered through a batch, or reported as
        failed, via `on_result`. Batches an interrupted run submitted for these requests are polled and
        read whole (paid for already), never re-submitted; the rest go in new batches if `admit` (the
        budget) lets them. Journals holding none of these requests (another task's run) are left alone."""
        with self.journal.locked():
            entries = []
            covered: set[str] = set()
            for entry in self.journal.open_entries():
                if not set(entry["items"].values()) & set(pending):
                    continue  # another run's batch: not ours to wait for or to close
                if entry.get("state") == "submitting":
                    found = await self._control(self.api.find(entry["tag"], float(entry.get("submitted_at") or 0)),
                                                "look for the batches submitted earlier")
                    if found is None:  # the create call never happened (or cannot be found): submit those again
                        entry.update(state="read", status="never created")
                        self.journal.write(entry)
                        continue
                    entry.update(batch_id=found, state="submitted")
                    self.journal.write(entry)
                entries.append(entry)
                covered |= set(entry["items"].values())
            if entries:
                print(f"[harness] batch: resuming {len(entries)} batch(es) submitted earlier "
                      f"({', '.join(e['batch_id'] for e in entries)}); polling, not re-submitting", flush=True)
            fresh = []
            for key, request in pending.items():
                if key in covered:
                    continue
                if admit(key):
                    fresh.append((key, request))
                else:
                    on_result(key, RequestFailed("not sent: budget.max_usd would be exceeded by this request's "
                                                 "worst case at the batch price; raise budget.max_usd and re-run "
                                                 "the same command (what was answered is cached)", kind="budget"),
                              time.time())
            for start in range(0, len(fresh), MAX_ITEMS_PER_BATCH):
                entries.append(await self._submit(fresh[start:start + MAX_ITEMS_PER_BATCH]))
            for entry in entries:
                await self._collect(entry, pending, on_result)

    async def _submit(self, chunk: list[tuple[str, ChatRequest]]) -> dict[str, Any]:
        tag = new_tag()
        items = {f"h{tag}-{i}": key for i, (key, _) in enumerate(chunk)}
        entry = {"tag": tag, "endpoint": self.journal.identity, "api": self.api.name, "state": "submitting",
                 "batch_id": None, "submitted_at": time.time(), "items": items}
        self.journal.write(entry)  # before the create call: a kill after it is found by the tag
        entry["batch_id"] = await self._control(
            self.api.submit([(cid, request) for cid, (_, request) in zip(items, chunk)], tag),
            f"submit {len(chunk)} request(s) as a batch")
        entry["state"] = "submitted"
        self.journal.write(entry)
        print(f"[harness] batch: {len(chunk)} request(s) submitted to {self.api.name} as {entry['batch_id']} "
              f"(journal {self.journal.folder / (tag + '.json')}); stopping now is safe: the same command "
              f"resumes by polling it", flush=True)
        return entry

    async def _collect(self, entry: dict[str, Any], pending: dict[str, ChatRequest], on_result: OnResult) -> None:
        state = await self._wait(entry)
        if state.status == "failed":  # refused as a whole (e.g. validation): no results to read
            entry["state"] = "read"
            self.journal.write(entry)
            for custom_id, key in entry["items"].items():
                if key in pending:
                    on_result(key, RequestFailed(f"batch {state.id} {state.status}: {state.problem or 'no results'}",
                                                 kind="batch_failed"), time.time())
            return
        wanted = {cid: pending[key] for cid, key in entry["items"].items() if key in pending}
        seen: set[str] = set()
        now = time.time()
        submitted = float(entry.get("submitted_at") or now)
        # Priced at the batch's end as the provider states it, if that is a time the batch could have ended.
        ended_at = state.ended_at if state.ended_at and submitted - 3600 <= state.ended_at <= now + 3600 else now
        answered = sum(v for k, v in state.counts.items() if k in ("completed", "succeeded"))
        async for item in self.api.results(state, wanted):
            if item.custom_id in seen:
                continue  # a provider repeating a line: the first answer counts
            seen.add(item.custom_id)
            on_result(entry["items"][item.custom_id], item.outcome, ended_at)
        if wanted and not seen and answered:
            raise EndpointError(f"batch {state.id} reports {answered} answered request(s), but none of its result lines "
                                f"could be read as ours; nothing was bought online. The journal is kept: the same "
                                f"command reads the results again (if they stay unreadable, set model.batch=false).")
        for custom_id in wanted.keys() - seen:
            on_result(entry["items"][custom_id], RequestFailed(
                f"batch {state.id} ({state.status}) has no result for item {custom_id}", kind="batch_missing"), ended_at)
        entry["state"] = "read"
        entry["status"] = state.status
        entry["counts"] = state.counts
        self.journal.write(entry)

    async def _control(self, call: Any, what: str) -> Any:
        """A control-plane call whose SDK retries are spent: one line naming what failed, no traceback."""
        try:
            return await call
        except (EndpointError, ConfigError):
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:300]}"
            cause = exc.__cause__ or exc.__context__
            if cause is not None and str(cause) and str(cause) not in reason:
                reason += f" ({str(cause)[:200]})"
            raise EndpointError(f"{self.api.name}: could not {what}: {reason}. Check model.base_url and the key, "
                                f"then re-run the same command.") from None

    async def _wait(self, entry: dict[str, Any]) -> BatchState:
        """Poll until the batch ends, with a progress bar of the provider's counts."""
        total = len(entry["items"])
        with tqdm(total=total, desc=f"batch {entry['batch_id']}", unit="req", disable=not self.show_progress) as bar:
            while True:
                state = await self._control(self.api.state(entry["batch_id"]),
                                            f"read batch {entry['batch_id']} (it is still there: the same command "
                                            f"resumes polling it)")
                done = sum(v for k, v in state.counts.items() if k not in ("total", "processing"))
                bar.n = min(total, done)
                bar.set_postfix_str(state.status, refresh=True)
                if state.ended:
                    return state
                waited = time.time() - float(entry.get("submitted_at") or time.time())
                if waited > GIVE_UP_AFTER_S:
                    raise EndpointError(f"batch {entry['batch_id']} is still {state.status!r} {waited / 3600:.1f} h after "
                                        f"it was submitted (the provider's window is 24 h). Nothing is lost: the "
                                        f"same command resumes polling it; or cancel it with the provider.")
                await asyncio.sleep(self.poll_s)
