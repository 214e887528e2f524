"""`python -m harness.prices [model] [--at DATE]`: the price book, one model or all, with each period's
sources; with --at, only the period in force then (and the window, if DATE has a time of day).
`--claims`: every price claim in the registry judged against the book on the claim's date."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from pathlib import Path

import yaml

from harness.config import ConfigError, PricingConfig
from harness.claims.registry import CLAIMS_DIR, load_claims
from harness.spend.price_book import PriceBook, PricePeriod, PriceSchedule, inline_schedule, load_book, parse_time
from harness.spend.price_claims import MODEL_CONFIGS, registry_price_matches


def _rate(value: float | None) -> str:
    return "—" if value is None else f"${value:g}"


def format_period(period: PricePeriod, current: bool = False) -> list[str]:
    r = period.rates
    lines = [f"  {'*' if current else ' '} {period.id:<22} {_span(period):<36} in {_rate(r.input_per_mtok)}  "
             f"cache hit {_rate(r.cached_input_per_mtok)}  out {_rate(r.output_per_mtok)}"
             + (f"  cache write {_rate(r.cache_write_per_mtok)}" if r.cache_write_per_mtok is not None else "")
             + (f"  batch -{period.batch_discount:.0%}" if period.batch_discount else "")]
    for w in r.windows:
        days = f" ({', '.join(w.days)})" if w.days else ""
        lines.append(f"        window {w.name or '?'} {w.start_utc}-{w.end_utc} UTC{days}: in {_rate(w.input_per_mtok)}  "
                     f"cache hit {_rate(w.cached_input_per_mtok)}  out {_rate(w.output_per_mtok)}")
    if period.long_context:
        lc = period.long_context
        lines.append(f"        prompts over {lc.above_input_tokens:,} tokens: in {_rate(lc.input_per_mtok)}  "
                     f"out {_rate(lc.output_per_mtok)}")
    if period.promotion:
        lines.append(f"        promotion: {period.promotion}")
    for source in period.sources:
        dates = ", ".join(x for x in (f"published {source.published}" if source.published else "",
                                      f"retrieved {source.retrieved}" if source.retrieved else "") if x)
        lines.append(f"        {'numbers from' if source.used else 'agrees     '} ({source.kind}{', ' + dates if dates else ''}): "
                     f"{source.title or ''} {source.url}".rstrip())
    for d in period.disagreements:
        said = "; ".join(f"{k} {v}" for k, v in d.says.items() if k != "windows") or "other windows"
        lines.append(f"        disagrees  ({d.source.kind}): {d.source.title or d.source.url} says {said}"
                     + (f" — not used: {d.why_not_used}" if d.why_not_used else ""))
    if period.note:
        lines.append(f"        note: {period.note}")
    return lines


def _span(period: PricePeriod) -> str:
    """The period's dates, with the hour where it does not start or end at midnight UTC."""
    def edge(at):
        if at is None:
            return None
        return at.strftime("%Y-%m-%d") if (at.hour, at.minute) == (0, 0) else at.strftime("%Y-%m-%d %H:%MZ")
    return f"{edge(period.effective_from) or '…'} .. {edge(period.effective_to) or 'now'}"


def format_schedule(schedule: PriceSchedule, at: str | None = None) -> str:
    lines = [f"{schedule.model} ({schedule.provider}, USD per 1M tokens; {schedule.book_file or 'the model config'})"]
    when = parse_time(at, "--at") if at else None
    if when is not None:  # the answer first, in dollars
        rates, period, window, _ = schedule.rates_at(when)
        timed = "T" in at or " " in at.strip()
        lines.append(f"  on {when:%Y-%m-%d %H:%M} UTC: period {period.id}" + (f", window {window}" if window else
                     (", base rates" if timed else "")) + f": in {_rate(rates.input_per_mtok)}  cache hit "
                     f"{_rate(rates.cached_input_per_mtok)}  out {_rate(rates.output_per_mtok)}"
                     + ("" if timed or not period.rates.windows else "  (time-of-day windows below: add a time, "
                                                                    "e.g. --at 2026-06-01T17:00Z)"))
        if not schedule.in_book(when):
            lines.append(f"  WARNING: {at} is outside every period of the book (it starts "
                         f"{_span(schedule.periods[0]).split(' ..')[0]}): the nearest period is shown")
        elif period.effective_to is None and when > dt.datetime.now(dt.timezone.utc):
            lines.append("  note: a future date: the book knows prices up to today, not changes still to come")
    for period in ([schedule.period_at(when)] if when else schedule.periods):
        lines += format_period(period, current=when is not None)
    return "\n".join(lines)


def price_claim_lines(book: PriceBook, claims_dir: str | None = None, model: str | None = None) -> list[str]:
    """One dated verdict per price claim (of `model` only, when given)."""
    claims = [c for c in load_claims(Path(claims_dir) if claims_dir else CLAIMS_DIR)
              if c.kind == "price" and (not model or c.model == model)]
    matches = registry_price_matches(claims, book)
    return [f"{c.id} ({c.source.publication}, {c.source.date}): {matches[c.id].status.upper()} — {matches[c.id].detail}"
            if c.id in matches else f"{c.id}: no model config or price_books for {c.model_as_named}: not judged"
            for c in claims]


def model_schedule(book: PriceBook, name: str) -> PriceSchedule:
    """The book's entry for a model config or book id; a config with inline prices shows those."""
    path, book_name = MODEL_CONFIGS / f"{name}.yaml", name
    if path.is_file():
        pricing = (yaml.safe_load(path.read_text()) or {}).get("pricing") or {}
        if not pricing.get("book"):
            known = {f.name for f in dataclasses.fields(PricingConfig)} - {"windows"}
            return inline_schedule(PricingConfig(**{k: v for k, v in pricing.items() if k in known}))
        book_name = pricing["book"]
    if book_name not in book.schedules:
        models = sorted(p.stem for p in MODEL_CONFIGS.glob("*.yaml"))
        raise ConfigError(f"{name!r} is neither a model config ({', '.join(models)}) nor a price-book id "
                          f"({', '.join(sorted(book.schedules))})")
    return book.schedule(book_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.prices", description=__doc__)
    parser.add_argument("model", nargs="?", help="a model config name (v4-flash) or book id (deepseek-v4-flash)")
    parser.add_argument("--at", help="a date or UTC time (2026-05-01, 2026-06-01T17:00Z): the prices in force then")
    parser.add_argument("--dir", help="another price-book folder (default conf/prices)")
    parser.add_argument("--claims", action="store_true", help="judge the registry's price claims by their dates")
    parser.add_argument("--claims-dir", help="another claims folder (default conf/claims)")
    args = parser.parse_args(argv)
    try:
        for flag, folder in (("--dir", args.dir), ("--claims-dir", args.claims_dir)):
            if folder and not Path(folder).is_dir():
                raise ConfigError(f"{flag} {folder}: no such folder")
        book = load_book(args.dir)
        if args.claims:
            print("\n".join(price_claim_lines(book, args.claims_dir, args.model)) or "no price claims")
            return 0
        schedules = [model_schedule(book, args.model)] if args.model else list(book.schedules.values())
        print("\n\n".join(format_schedule(s, args.at) for s in schedules))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
