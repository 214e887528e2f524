"""The price book: what each provider model cost, period by period, and where each number came from.

Prices change (DeepSeek's V4 prices changed three times in seven weeks), so a single snapshot bills
old runs and judges price claims wrongly. `conf/prices/<provider>.yaml` holds, per provider model id,
periods with `effective_from` / `effective_to` (UTC; `to` exclusive, null = still in force), cache-hit,
cache-miss, cache-write and output prices, the batch discount, time-of-day windows, a long-context
tier, and each period's sources (which one the numbers come from, and the ones that disagree).

A model config points at the book with `pricing.book: <provider model id>`; self-hosted and custom
endpoints keep inline prices (`pricing.book: null`), which become a one-period schedule.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.common.exchange import Usage
from harness.config import ConfigError, PriceWindow, PricingConfig
from harness.spend.pricing import WEEKDAYS, in_window, prices_at, request_cost_usd, window_at

PRICES_DIR = Path(__file__).resolve().parents[2] / "conf" / "prices"
RATE_FIELDS = ("input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok")
SOURCE_KINDS = ("announced", "observed")


@dataclass(frozen=True)
class Source:
    url: str
    title: str = ""
    published: str | None = None
    retrieved: str | None = None
    kind: str = "announced"  # announced (said to apply) | observed (seen in force)
    used: bool = False
    says: str = ""


@dataclass(frozen=True)
class Disagreement:
    source: Source
    says: dict[str, Any]
    why_not_used: str = ""


@dataclass(frozen=True)
class LongContext:
    """Higher rates for the whole request once its prompt passes `above_input_tokens` (Gemini, GPT)."""

    above_input_tokens: int
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None


@dataclass(frozen=True)
class PricePeriod:
    id: str
    effective_from: dt.datetime | None  # None: since always (inline prices)
    effective_to: dt.datetime | None    # exclusive; None: still in force
    rates: PricingConfig                # base rates and time-of-day windows
    batch_discount: float | None = None  # 0.5: the batch API bills half; None: no batch API
    long_context: LongContext | None = None
    promotion: str | None = None
    note: str | None = None
    sources: tuple[Source, ...] = ()
    disagreements: tuple[Disagreement, ...] = ()

    def contains(self, at: dt.datetime) -> bool:
        return ((self.effective_from is None or self.effective_from <= at)
                and (self.effective_to is None or at < self.effective_to))

    @property
    def used_source(self) -> Source | None:
        return next((s for s in self.sources if s.used), None)

    def span(self) -> str:
        start = self.effective_from.date().isoformat() if self.effective_from else "…"
        end = self.effective_to.date().isoformat() if self.effective_to else "now"
        return f"{start}..{end}"


@dataclass(frozen=True)
class Quote:
    """One response's price: the dollars and the period, window and rate they were billed at."""

    cost_usd: float
    period: str
    window: str = ""        # "" = the period's base rates
    batch: bool = False
    long_context: bool = False

    @property
    def label(self) -> str:
        parts = [self.period] + [p for p in (self.window, "batch" if self.batch else "",
                                               "long-context" if self.long_context else "") if p]
        return " · ".join(parts)


@dataclass
class PriceUse:
    """What was bought at one price (period · window · batch): one line of the run's piecewise bill."""

    price: str
    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class PriceLedger:
    """Responses bought during a run, grouped by the price they were billed at (summary.json prices_used)."""

    def __init__(self) -> None:
        self.uses: dict[str, PriceUse] = {}

    def add(self, quote: Quote, usage: Usage) -> None:
        use = self.uses.setdefault(quote.label, PriceUse(quote.label))
        use.requests += 1
        use.input_tokens += usage.input_tokens
        use.cached_input_tokens += usage.cached_input_tokens
        use.output_tokens += usage.output_tokens
        use.cost_usd += quote.cost_usd

    def to_list(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(use) for use in self.uses.values()]


@dataclass(frozen=True)
class PriceSchedule:
    """The periods one model is billed by, in time order."""

    model: str      # the book's model id, or "inline" for prices in the model config
    provider: str
    periods: tuple[PricePeriod, ...]
    book_file: str = ""

    def period_at(self, at: dt.datetime) -> PricePeriod:
        """The period in force at `at`; outside the book, the nearest one (the run records which)."""
        at = _utc(at)
        for period in self.periods:
            if period.contains(at):
                return period
        earlier = [p for p in self.periods if p.effective_from is None or p.effective_from <= at]
        return earlier[-1] if earlier else self.periods[0]

    def in_book(self, at: dt.datetime) -> bool:
        return any(p.contains(_utc(at)) for p in self.periods)

    def rates_at(self, at: dt.datetime, input_tokens: int = 0) -> tuple[PricingConfig, PricePeriod, str, bool]:
        """Rates in force at `at` for a prompt of `input_tokens`: (rates, period, window name, long context)."""
        period = self.period_at(at)
        rates, window = period.rates, ""
        long = period.long_context is not None and input_tokens > period.long_context.above_input_tokens
        if long:
            lc = period.long_context
            rates = dataclasses.replace(rates, input_per_mtok=lc.input_per_mtok, output_per_mtok=lc.output_per_mtok,
                                        cached_input_per_mtok=lc.cached_input_per_mtok, windows=[])
        open_window = window_at(rates, at)
        if open_window is not None:
            window = open_window.name or f"{open_window.start_utc}-{open_window.end_utc}"
            rates = dataclasses.replace(prices_at(rates, at), windows=[])
        return rates, period, window, long

    def quote(self, usage: Usage, at: dt.datetime, batch: bool = False) -> Quote:
        """Tokens to dollars at the period and window in force at `at` (batch: the period's discount)."""
        rates, period, window, long = self.rates_at(at, usage.input_tokens)
        cost = request_cost_usd(usage, dataclasses.replace(rates, windows=[], gpu_hour_usd=None))
        if batch:
            if period.batch_discount is None:
                raise ConfigError(f"{self.model} has no batch price in period {period.id}: set model.batch=false")
            cost *= 1.0 - period.batch_discount
        return Quote(cost, period.id, window, batch, long)

    def worst_rates(self, prompt_tokens: int | None = None, since: dt.datetime | None = None) -> PricingConfig:
        """The highest of every rate over periods and windows: what a budget may assume. Only periods in
        force `since` (now) or later count; a long-context tier only for a prompt that could pass its
        threshold (`prompt_tokens`: an upper bound)."""
        best: dict[str, float] = {k: 0.0 for k in RATE_FIELDS}
        for period in self.periods:
            if since is not None and period.effective_to is not None and period.effective_to <= _utc(since):
                continue  # over before the requests can be answered
            candidates = [period.rates, *period.rates.windows]
            if period.long_context and (prompt_tokens is None or prompt_tokens > period.long_context.above_input_tokens):
                candidates.append(period.long_context)
            for rates in candidates:
                for k in RATE_FIELDS:
                    value = getattr(rates, k, None)
                    best[k] = max(best[k], value if value is not None else period.rates.input_per_mtok
                                  if k != "output_per_mtok" else 0.0)
        return PricingConfig(**best)

    def window_open(self, name_fragment: str, at: dt.datetime) -> PriceWindow | None:
        """The window whose name contains `name_fragment` in force at `at`, if any."""
        return next((w for w in self.period_at(at).rates.windows if name_fragment in w.name and in_window(w, at)), None)

    def next_window_start(self, name_fragment: str, after: dt.datetime) -> tuple[dt.datetime, dt.datetime, PriceWindow] | None:
        """When windows whose name contains `name_fragment` (e.g. "off-peak") next open after `after`, and
        when they next all close (adjacent windows, such as a weekend's, count as one): a minute-by-minute
        scan of the next 8 days of the book."""
        after = _utc(after)
        at = after.replace(second=0, microsecond=0)
        for _ in range(8 * 24 * 60):
            window = self.window_open(name_fragment, at)
            if window is not None:
                end = at
                while self.window_open(name_fragment, end) is not None and end - at < dt.timedelta(days=4):
                    end += dt.timedelta(minutes=1)
                return max(at, after), end, window
            at += dt.timedelta(minutes=1)
        return None

    def describe(self, start: dt.datetime | None = None, end: dt.datetime | None = None) -> dict[str, Any]:
        """The book entry for records: the periods overlapping [start, end] (all when not given)."""
        def overlaps(p: PricePeriod) -> bool:
            return ((start is None or p.effective_to is None or p.effective_to > start)
                    and (end is None or p.effective_from is None or p.effective_from <= end))
        return {"book": self.model, "provider": self.provider, "file": self.book_file,
                "periods": [period_record(p) for p in self.periods if overlaps(p)]}


def period_record(period: PricePeriod) -> dict[str, Any]:
    rates = dataclasses.asdict(period.rates)
    return {
        "id": period.id, "span": period.span(),
        "effective_from": period.effective_from.isoformat() if period.effective_from else None,
        "effective_to": period.effective_to.isoformat() if period.effective_to else None,
        **{k: rates[k] for k in RATE_FIELDS}, "windows": rates["windows"],
        "batch_discount": period.batch_discount,
        "long_context": dataclasses.asdict(period.long_context) if period.long_context else None,
        "promotion": period.promotion, "note": period.note,
        "source": dataclasses.asdict(period.used_source) if period.used_source else None,
        "disagreements": len(period.disagreements),
    }


def _utc(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.timezone.utc) if at.tzinfo is None else at.astimezone(dt.timezone.utc)


def parse_time(value: Any, where: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _utc(value)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    try:
        return _utc(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a date or ISO time (write \"2026-05-05T16:00:00Z\")") from None


# ------------------------------------------------------------------------------------------ loading


def _number(entry: dict[str, Any], key: str, where: str, required: bool = False) -> float | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: {key} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: {key} must be a non-negative number of USD per 1M tokens, not {value!r}")
    return float(value)


def _clock(value: Any, where: str) -> str:
    text = str(value or "")
    parts = text.split(":")
    if not (2 <= len(parts) <= 3 and all(p.isdigit() for p in parts)) or int(parts[0]) > 24 or int(parts[1]) > 59:
        raise ConfigError(f"{where}: a window's start_utc / end_utc is \"HH:MM\" (UTC), not {value!r}")
    return text


def _days(value: Any, where: str) -> list[str]:
    days = [str(d).lower()[:3] for d in (value or [])]
    unknown = [d for d in days if d not in WEEKDAYS]
    if unknown:
        raise ConfigError(f"{where}: window days are {', '.join(WEEKDAYS)}, not {unknown}")
    return days


def _source(entry: dict[str, Any], where: str) -> Source:
    if not isinstance(entry, dict) or not entry.get("url"):
        raise ConfigError(f"{where}: every source needs a url (or a document name)")
    if entry.get("kind", "announced") not in SOURCE_KINDS:
        raise ConfigError(f"{where}: source kind must be one of {SOURCE_KINDS}, not {entry.get('kind')!r}")
    return Source(str(entry["url"]), str(entry.get("title") or ""), _text(entry.get("published")),
                  _text(entry.get("retrieved")), entry.get("kind", "announced"), bool(entry.get("used")),
                  str(entry.get("says") or ""))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _period(entry: dict[str, Any], where: str) -> PricePeriod:
    where = f"{where} period {entry.get('id', '?')}"
    windows = [PriceWindow(name=str(w.get("name") or ""), start_utc=_clock(w.get("start_utc"), where),
                           end_utc=_clock(w.get("end_utc"), where), days=_days(w.get("days"), where),
                           **{k: _number(w, k, where) for k in ("input_per_mtok", "cached_input_per_mtok",
                                                                  "output_per_mtok")})
               for w in entry.get("windows") or []]
    rates = PricingConfig(input_per_mtok=_number(entry, "input_per_mtok", where, True),
                          cached_input_per_mtok=_number(entry, "cached_input_per_mtok", where),
                          cache_write_per_mtok=_number(entry, "cache_write_per_mtok", where),
                          output_per_mtok=_number(entry, "output_per_mtok", where, True), windows=windows)
    discount = entry.get("batch_discount")
    if discount is not None and not (isinstance(discount, (int, float)) and 0 <= discount < 1):
        raise ConfigError(f"{where}: batch_discount is the fraction off (0.5 = half price), not {discount!r}")
    lc = entry.get("long_context")
    long_context = LongContext(int(lc["above_input_tokens"]), _number(lc, "input_per_mtok", where, True),
                               _number(lc, "output_per_mtok", where, True),
                               _number(lc, "cached_input_per_mtok", where)) if lc else None
    sources = tuple(_source(s, where) for s in entry.get("sources") or [])
    if sum(s.used for s in sources) != 1:
        raise ConfigError(f"{where}: exactly one source must be marked used: true (the one the numbers come from)")
    disagreements = tuple(Disagreement(_source(d.get("source"), where), dict(d.get("says") or {}),
                                       str(d.get("why_not_used") or "")) for d in entry.get("disagreements") or [])
    return PricePeriod(str(entry["id"]), parse_time(entry.get("effective_from"), where),
                       parse_time(entry.get("effective_to"), where), rates,
                       float(discount) if discount is not None else None, long_context,
                       entry.get("promotion"), entry.get("note"), sources, disagreements)


@dataclass
class PriceBook:
    schedules: dict[str, PriceSchedule] = field(default_factory=dict)

    def schedule(self, model_id: str) -> PriceSchedule:
        if model_id not in self.schedules:
            raise ConfigError(f"model.pricing.book={model_id} is not in the price book (conf/prices/*.yaml has: "
                              f"{', '.join(sorted(self.schedules)) or 'nothing'}); fix the name, or set "
                              f"model.pricing.book=null and give the prices inline (model.pricing.input_per_mtok=...)")
        return self.schedules[model_id]


def load_book(directory: str | Path | None = None) -> PriceBook:
    """Every `*.yaml` under the book's folder, checked: periods in order and not overlapping, one used
    source each, prices non-negative. A wrong entry is a ConfigError naming the file and period."""
    folder = Path(directory) if directory else PRICES_DIR
    book = PriceBook()
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"price book {path}: cannot be read ({exc})") from None
        for model_id, entry in (data.get("models") or {}).items():
            where = f"price book {path.name}, {model_id}"
            try:
                periods = tuple(_period(p, where) for p in entry.get("periods") or [])
            except (KeyError, TypeError, AttributeError) as exc:
                raise ConfigError(f"{where}: malformed entry ({exc!r})") from None
            if not periods:
                raise ConfigError(f"{where}: no periods")
            for before, after in zip(periods, periods[1:]):
                if before.effective_to is None or after.effective_from is None or after.effective_from < before.effective_to:
                    raise ConfigError(f"{where}: periods {before.id} and {after.id} overlap or are out of order")
            if model_id in book.schedules:
                raise ConfigError(f"{where}: {model_id} is also in {book.schedules[model_id].book_file}")
            book.schedules[str(model_id)] = PriceSchedule(str(model_id), str(data.get("provider") or path.stem),
                                                          periods, str(path))
    return book


def inline_schedule(pricing: PricingConfig) -> PriceSchedule:
    """Prices written in the model config, as one open period."""
    source = Source(pricing.source or "model config (model.pricing)", used=True, published=pricing.effective_date or None)
    rates = dataclasses.replace(pricing, gpu_hour_usd=None)
    return PriceSchedule("inline (model.pricing)", "config", (PricePeriod("config", None, None, rates, sources=(source,)),))


def schedule_for(pricing: PricingConfig) -> PriceSchedule:
    """The schedule a model is billed by: the book's entry when `pricing.book` is set, else its inline prices.
    Inline prices beside a book are refused, not silently ignored."""
    if not pricing.book:
        return inline_schedule(pricing)
    if pricing.input_per_mtok or pricing.output_per_mtok or pricing.cached_input_per_mtok is not None:
        raise ConfigError(f"model.pricing.book={pricing.book} bills this model from the price book, so the inline "
                          f"prices given would be ignored; to bill your own prices add model.pricing.book=null")
    return load_book(pricing.book_dir).schedule(pricing.book)
