"""How a claim reads to a person, in one place for `python -m harness.claims list`, the board and a
run's report: a rating never shows as a percentage, 1600000000000 parameters shows as 1.6T, and a claim
no run judges says why ("no task", "model fact (no task)")."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from harness.claims.registry import UNKNOWN, Claim

_BOUND = {"=": "", "~": "~", "<": "<", ">": ">", "<=": "≤", ">=": "≥"}
_PLAIN = {"percent": "{:g}%", "rating": "{:,g} rating", "usd_per_mtok": "${:g} /1M tok", "ms": "{:,g} ms",
          "tokens_per_s": "{:,g} tok/s", "gpus": "{:,g} GPUs", "days": "{:g} days", "months": "{:g} months",
          "gigabytes": "{:,g} GB", "flops": "{:.3g} FLOPs"}
_SCALED = {"parameters": "{} parameters", "tokens": "{} tokens", "usd": "${}", "count": "{}"}
KIND_ORDER = ("score", "price", "speed", "fact")
_WIDTHS = (22, 34, 32, 35)  # column caps for `list`: a longer cell overflows its own line, not every line


def scaled(value: float) -> str:
    """1.6e12 -> 1.6T, 284e9 -> 284B, 5.6e6 -> 5.6M; below a thousand as written."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:,g}"


def claimed_text(claim: Claim) -> str:
    """The claimed number with its unit and qualifier: "~1M tokens", "27% of DeepSeek-V3.2", "3,206 rating"."""
    if claim.unit == "date":
        text = str(claim.value)
    elif claim.unit in _SCALED:
        text = _SCALED[claim.unit].format(scaled(float(claim.value)))
    else:
        text = _PLAIN.get(claim.unit, "{:g} " + claim.unit).format(claim.value)
    text = _BOUND.get(claim.bound, claim.bound) + text
    return f"{text} of {claim.relative_to}" if claim.relative_to and claim.unit == "percent" else (
        f"{text} vs {claim.relative_to}" if claim.relative_to else text)


def model_family(name: str) -> str:
    """A model's name up to its first versioned word, without qualifiers in parentheses: sources name
    one release differently ("DeepSeek V4 (671B)", "DeepSeek V4-Pro-Max" -> "deepseek v4")."""
    words = [w for w in re.split(r"[\s\-_]+", re.sub(r"\(.*?\)", " ", name).lower()) if w]
    for i, word in enumerate(words):
        if any(ch.isdigit() for ch in word):
            return " ".join(words[:i + 1])
    return " ".join(words)


def disagree(a: Claim, b: Claim) -> bool:
    """Two sources state different numbers for one thing: not two of our different models of a family
    (V4-Pro's 1.6T and V4-Flash's 284B parameters agree with each other)."""
    return ((a.source.publication, a.source.date) != (b.source.publication, b.source.date) and a.value != b.value
            and not (a.model and b.model and a.model != b.model))


def quantity(claim: Claim) -> str:
    """What the number is: a score's benchmark, else its metric ("price: output", "fact: total parameters")."""
    if claim.kind == "score":
        return claim.benchmark + (" (rating)" if claim.unit == "rating" else "")
    what = claim.metric.replace("_", " ")
    return what if claim.kind == "fact" else f"{claim.kind}: {what}"


def check_text(claim: Claim) -> str:
    """What checks it — its task, the price book, a streamed run — or why nothing does."""
    if claim.no_run_status is not None:
        return "model fact" if claim.kind == "fact" else claim.no_run_status
    by = {"score": str(claim.task), "price": "price book", "speed": "streamed run"}[claim.kind]
    unmapped = claim.model is None and not (claim.kind == "price" and claim.price_books)
    if unmapped and claim.kind == "price":
        return "not judged (no price-book entry)"
    return by + (" (no model config)" if unmapped else "")


def counts_line(claims: list[Claim]) -> str:
    """"57 claims: 30 score (12 with a task), 10 price, 2 speed, 15 fact"."""
    kinds = Counter(c.kind for c in claims)
    parts = []
    for kind in KIND_ORDER + tuple(sorted(set(kinds) - set(KIND_ORDER))):
        if kinds[kind]:
            tasked = sum(1 for c in claims if c.kind == kind and c.task)
            parts.append(f"{kinds[kind]} {kind}" + (f" ({tasked} with a task)" if kind == "score" else ""))
    return f"{len(claims)} claims: " + ", ".join(parts)


def registry_lines(claims: list[Claim]) -> list[str]:
    """Every claim, one line each, grouped by source (newest first, undated last), aligned columns:
    claimed value, model as named [our config], benchmark or quantity, task or why none, id."""
    groups: dict[tuple[str, str], list[Claim]] = defaultdict(list)
    for c in claims:
        groups[(c.source.publication, c.source.date)].append(c)
    dated = sorted((k for k in groups if k[1] != UNKNOWN), key=lambda k: (k[1], k[0]), reverse=True)
    order = dated + sorted(k for k in groups if k[1] == UNKNOWN)
    rows = {k: [(claimed_text(c), c.model_as_named + (f" [{c.model}]" if c.model else ""), quantity(c),
                 check_text(c), c.id)
                for c in sorted(groups[k], key=lambda c: (KIND_ORDER.index(c.kind) if c.kind in KIND_ORDER else 9,
                                                          quantity(c), c.model_as_named))]
            for k in order}
    head = ("CLAIMED", "MODEL AS NAMED [OUR CONFIG]", "BENCHMARK / QUANTITY", "CHECKED BY")
    widths = [min(cap, max([len(h)] + [len(r[i]) for rs in rows.values() for r in rs]))
              for i, (h, cap) in enumerate(zip(head, _WIDTHS))]
    lines = ["", "  " + "  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  ID"]
    for (publication, date), rs in rows.items():
        files = ", ".join(sorted({c.file for c in groups[(publication, date)]}))
        lines += ["", f"{publication}, {date}  ({len(rs)} claims, conf/claims/{files})"]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4] for r in rs]
    return lines[1:] + ["", counts_line(claims)]
