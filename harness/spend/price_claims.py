"""A price claim judged by date: "$3.48 per 1M output tokens" is right or wrong only for the period it
was made in. The claim is compared with the book's price in force on its date (a month-precise date
such as "2026-04" covers every period in force that month), and every period whose price equals the
claim is named, so an outdated or early figure reads as such rather than as a plain mismatch."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from pathlib import Path

import yaml

from harness.common.price_match import ABOVE, BELOW, CONSISTENT, NOT_MEASURED, PriceMatch
from harness.config import ConfigError
from harness.spend.price_book import PriceBook, PricePeriod, PriceSchedule

MODEL_CONFIGS = Path(__file__).resolve().parents[2] / "conf" / "model"

# Claim metric -> the book's field, and the verdict statuses (as in harness.claims.verdicts).
PRICE_FIELDS = {"input": "input_per_mtok", "cached_input": "cached_input_per_mtok", "output": "output_per_mtok"}
TOLERANCE = 0.005  # claims round to the cent: $0.145 may be written $0.15


def claim_dates(date: str) -> tuple[dt.datetime, dt.datetime] | None:
    """A claim's date ("2026-05-25", "2026-05", "2026") as the UTC span it covers; None if unreadable."""
    match = re.fullmatch(r"(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?", (date or "").strip())
    if not match:
        return None
    year, month, day = int(match[1]), int(match[2] or 0), int(match[3] or 0)
    if day:
        start = dt.datetime(year, month, day, tzinfo=dt.timezone.utc)
        return start, start + dt.timedelta(days=1)
    if month:
        last = calendar.monthrange(year, month)[1]
        return dt.datetime(year, month, 1, tzinfo=dt.timezone.utc), dt.datetime(year, month, last, tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
    return dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(year + 1, 1, 1, tzinfo=dt.timezone.utc)


def _prices(period: PricePeriod, field: str) -> list[tuple[float, str]]:
    """The period's price for `field`: its base rate and each time-of-day window's, with a label."""
    found = []
    base = getattr(period.rates, field)
    if base is not None:
        found.append((base, "list price"))
    for window in period.rates.windows:
        value = getattr(window, field)
        if value is not None:
            found.append((value, f"{window.name or 'window'} price"))
    return found


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= max(TOLERANCE, 1e-9) * (1 if b < 1 else b)


def match_price_claim(schedule: PriceSchedule, metric: str, value: float, date: str) -> PriceMatch:
    field = PRICE_FIELDS[metric]
    span = claim_dates(date)
    in_force = ([p for p in schedule.periods if (p.effective_to is None or p.effective_to > span[0])
                 and (p.effective_from is None or p.effective_from < span[1])] if span else [])
    if span and not in_force:  # before the book starts or in a gap: the nearest period
        in_force = [schedule.period_at(span[0])]
    matching = tuple(f"{schedule.model} {label} {p.span()} ({p.id})" for p in schedule.periods
                     for price, label in _prices(p, field) if _same(price, value))
    if not in_force:
        return PriceMatch(NOT_MEASURED, None, "", "", matching,
                          f"${value:g} {metric}: the claim's date {date!r} cannot be read, so no period is in force; "
                          + (f"matches {'; '.join(matching)}" if matching else "matches no period of the book"))
    on_date = [(price, label, p) for p in in_force for price, label in _prices(p, field)]
    hit = next(((price, label, p) for price, label, p in on_date if _same(price, value)), None)
    if hit is not None:
        price, label, period = hit
        return PriceMatch(CONSISTENT, price, period.id, period.span(), matching,
                          f"${value:g} {metric}: matches {schedule.model} {label} {period.span()} ({period.id}), "
                          f"in force on the claim's date {date}")
    base = [(price, label, p) for price, label, p in on_date if label == "list price"] or on_date
    if not base:
        return PriceMatch(NOT_MEASURED, None, in_force[0].id, in_force[0].span(), matching,
                          f"${value:g} {metric}: the book has no {metric} price for {schedule.model} on {date}")
    price, label, period = min(base, key=lambda b: abs(b[0] - value))
    elsewhere = (f"; it matches {'; '.join(matching)}" if matching else
                 f"; it matches no {schedule.model} period on or after its date")
    closest = min(((pr, lb, p) for p in schedule.periods for pr, lb in _prices(p, field)),
                  key=lambda b: abs(b[0] - value), default=None)
    near = (f"; closest: ${closest[0]:g} ({closest[1]}, {closest[2].span()})"
            if closest and not matching else "")
    return PriceMatch(ABOVE if price > value else BELOW, price, period.id, period.span(), matching,
                      f"${value:g} {metric}: the book's {label} on {date} is ${price:g} ({schedule.model} "
                      f"{period.id}, {period.span()}){elsewhere}{near}")


def match_price_claim_any(schedules: list[PriceSchedule], metric: str, value: float, date: str) -> PriceMatch:
    """A claim about an ambiguous model ("DeepSeek V4"): consistent if any candidate's price on the
    date matches; otherwise the candidate whose price on the date is closest, naming all."""
    matches = [match_price_claim(s, metric, value, date) for s in schedules]
    hit = next((m for m in matches if m.status == CONSISTENT), None)
    if hit is not None or len(matches) == 1:
        return hit or matches[0]
    names = ", ".join(s.model for s in schedules)
    matching = tuple(line for m in matches for line in m.matching)
    judged = [m for m in matches if m.book_value is not None] or matches
    closest = min(judged, key=lambda m: abs((m.book_value or 0.0) - value))
    elsewhere = (f"it matches {'; '.join(matching)}" if matching else
                 f"it matches no period of {names} on or after its date")
    return PriceMatch(closest.status, closest.book_value, closest.period, closest.span, matching,
                      f"${value:g} {metric}: none of {names} had that price on {date}; {elsewhere}; closest on the "
                      f"date: " + "; ".join(m.detail.split(": ", 1)[1].split("; it matches")[0] for m in matches))


def price_matches(claims: list, model_name: str, schedule: PriceSchedule) -> dict[str, PriceMatch]:
    """The book's word on each price claim about `model_name` (a model config), for the run's verdicts."""
    return {c.id: match_price_claim(schedule, c.metric, c.value, c.source.date)
            for c in claims if c.kind == "price" and c.model == model_name}


def book_id(name: str) -> str:
    """A model config's name (v4-flash) or a book id (deepseek-v4-flash) -> the book id."""
    path = MODEL_CONFIGS / f"{name}.yaml"
    if path.is_file():
        book = ((yaml.safe_load(path.read_text()) or {}).get("pricing") or {}).get("book")
        if not book:
            raise ConfigError(f"model config {name} has inline prices (pricing.book is null): see {path}")
        return book
    return name


def registry_price_matches(claims: list, book: PriceBook) -> dict[str, PriceMatch]:
    """Every price claim the book can speak to, judged on its date without a run: by its model config's
    book entry, or by every entry in its `price_books` (a model named ambiguously)."""
    matches = {}
    for claim in claims:
        if claim.kind != "price":
            continue
        books = list(claim.price_books) or ([book_id(claim.model)] if claim.model else [])
        if books:
            matches[claim.id] = match_price_claim_any([book.schedule(b) for b in books], claim.metric, claim.value,
                                                      claim.source.date)
    return matches
