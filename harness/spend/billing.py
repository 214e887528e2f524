"""Reconciles what a run computed it spent with what the provider billed, where the provider exposes
the account balance (DeepSeek: `GET /user/balance`). Optional (`model.balance_url`): the balance is read
before the first request and after the last, and the difference is the billed amount. Anything else
using the same key meanwhile, and providers' delay in updating balances, show up as a difference,
so the record says so rather than calling it an error of ours.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

BALANCE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Reconciliation:
    currency: str
    balance_before: float
    balance_after: float
    billed: float  # balance_before - balance_after
    computed_usd: float  # this run's cost_usd_new
    difference: float  # billed - computed (same currency only when the balance is in USD)
    note: str = ("billed = the balance's drop during the run: other use of the same key, and the provider's "
                 "delay in updating the balance, count too")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_balance(body: dict[str, Any], currency: str = "USD") -> float | None:
    """DeepSeek's shape: {"is_available": true, "balance_infos": [{"currency": "USD", "total_balance": "110.00",
    "granted_balance": "10.00", "topped_up_balance": "100.00"}]} (amounts are strings)."""
    for info in body.get("balance_infos") or []:
        if str(info.get("currency", "")).upper() == currency.upper():
            return float(info["total_balance"])
    return None


def fetch_balance(url: str, api_key: str, currency: str = "USD") -> float | None:
    """The account's total balance in `currency`, or None if it cannot be read (never fatal: the
    reconciliation is a check, not a requirement). The key goes only into the request header."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=BALANCE_TIMEOUT_S) as response:  # noqa: S310 (configured URL)
            return parse_balance(json.loads(response.read()), currency)
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return None


def reconcile(before: float | None, after: float | None, computed_usd: float, currency: str = "USD") -> Reconciliation | None:
    if before is None or after is None:
        return None
    billed = before - after
    return Reconciliation(currency, before, after, billed, computed_usd, billed - computed_usd)
