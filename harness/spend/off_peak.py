"""`schedule.off_peak=true`: hold the run until the price book's next discounted window opens, showing
when that is, so a check that can wait is bought at the lower rate."""

from __future__ import annotations

import datetime as dt
import time

from tqdm.auto import tqdm

from harness.config import ConfigError
from harness.spend.price_book import PriceSchedule


def wait_for_window(prices: PriceSchedule, window: str, show: bool = True,
                    now: dt.datetime | None = None, sleep=time.sleep) -> float:
    """Sleep until the next window whose name contains `window` opens (at once if it is open now).
    Returns the seconds waited. No such window in the book is an error naming the fix."""
    now = now or dt.datetime.now(dt.timezone.utc)
    opening = prices.next_window_start(window, now)
    if opening is None:
        raise ConfigError(f"schedule.off_peak=true, but the price book has no '{window}' window for "
                          f"{prices.model} (within the next 8 days); run without it (schedule.off_peak=false)")
    opens, closes, _ = opening
    wait_s = max(0.0, (opens - now).total_seconds())
    print(f"[harness] off-peak: the '{window}' price opens {opens:%Y-%m-%d %H:%M} UTC and closes "
          f"{closes:%H:%M} UTC; " + (f"waiting {wait_s / 3600:.2f} h (Ctrl-C to stop; nothing is sent before)"
                                     if wait_s > 0 else "open now, sending"), flush=True)
    if wait_s <= 0:
        return 0.0
    with tqdm(total=round(wait_s), desc="waiting for off-peak", unit="s", disable=not show) as bar:
        left = wait_s
        while left > 0:
            step = min(left, 30.0)
            sleep(step)
            left -= step
            bar.update(round(step))
    return wait_s
