"""Usage a server reports is untrusted input: checked against what the request could have produced.

Enters: a parsed Completion, the request it answers, and the problems found while reading the raw
counts. Leaves: the Completion with `usage_status`:
* "reported": the counts are non-negative integers within the request's bounds;
* "suspect": a count was not a number, was negative, or exceeded what the request could produce
  (prompt tokens far above the prompt's bytes plus template overhead; output above max_tokens plus
  the reasoning the provider counts apart; cached above prompt; reasoning above output). The answer is
  kept; usage is billed at the request's worst-case bound and the problems are named in `usage_note`;
* "estimated": the server reported no usage: prompt bytes / 4 and answer bytes / 4 tokens (the
  budget's default bytes per token), named as an estimate.
The summary counts both; nothing here raises.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from harness.common.exchange import ChatRequest, Completion, Usage
from harness.spend.budget import DEFAULT_BYTES_PER_TOKEN, max_output_tokens, prompt_bytes, prompt_token_bound

_OUTPUT_SLACK = 16  # tokens a provider may count beyond max_tokens (end-of-turn markers)
# "Far above what the prompt could be": tokens never outnumber bytes, but a provider may add a hidden
# system prompt (tool use, thinking) of a few hundred tokens.
_PROMPT_FACTOR, _PROMPT_SLACK = 2, 512


def count(value: Any) -> int | None:
    """A token count as an int, or None if it is not a non-negative whole number (bools, text,
    negative or fractional numbers, NaN)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    return None


def read_counts(raw: Any, fields: dict[str, tuple[str, ...]]) -> tuple[dict[str, int], list[str]]:
    """{name: count} for each field path present in `raw` (absent: 0), and the problems found."""
    counts: dict[str, int] = {}
    problems: list[str] = []
    for name, path in fields.items():
        value: Any = raw
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            counts[name] = 0
            continue
        parsed = count(value)
        if parsed is None:
            problems.append(f"{'.'.join(path)}={str(value)[:40]!r} is not a token count")
        counts[name] = parsed or 0
    return counts, problems


def _answer_bytes(completion: Completion) -> int:
    return len((completion.text + (completion.reasoning or "")).encode("utf-8", "surrogatepass"))


def vet(completion: Completion, request: ChatRequest, problems: list[str] | None = None) -> Completion:
    """The completion with its usage checked (see the module docstring)."""
    if not completion.usage_reported:
        output = math.ceil(_answer_bytes(completion) / DEFAULT_BYTES_PER_TOKEN)
        cap = max_output_tokens(request)
        estimate = Usage(input_tokens=math.ceil(prompt_bytes(request) / DEFAULT_BYTES_PER_TOKEN),
                         output_tokens=min(output, cap) if cap else output)
        return dataclasses.replace(completion, usage=estimate, usage_status="estimated",
                                   usage_note=f"no usage reported: estimated at {DEFAULT_BYTES_PER_TOKEN:g} bytes per token")
    usage, problems = completion.usage, list(problems or [])
    input_bound = prompt_token_bound(request)
    output_cap = max_output_tokens(request)
    if usage.input_tokens == 0 and prompt_bytes(request) > 0:
        problems.append("0 prompt tokens for a prompt that is not empty")
    if usage.output_tokens == 0 and _answer_bytes(completion) > 0:
        problems.append("0 output tokens for an answer that is not empty")
    if usage.input_tokens > _PROMPT_FACTOR * input_bound + _PROMPT_SLACK:
        problems.append(f"{usage.input_tokens} prompt tokens for a prompt of at most {input_bound}")
    if usage.cached_input_tokens > usage.input_tokens:
        problems.append(f"{usage.cached_input_tokens} cached of {usage.input_tokens} prompt tokens")
    if usage.cache_write_input_tokens > usage.input_tokens:
        problems.append(f"{usage.cache_write_input_tokens} cache-write of {usage.input_tokens} prompt tokens")
    if usage.reasoning_tokens > usage.output_tokens:
        problems.append(f"{usage.reasoning_tokens} reasoning of {usage.output_tokens} output tokens")
    if output_cap and usage.output_tokens > output_cap + usage.reasoning_tokens + _OUTPUT_SLACK:
        problems.append(f"{usage.output_tokens} output tokens with max_tokens={output_cap}")
    if not problems:
        return completion
    # The worst case this request could have cost: every prompt token uncached, every output token used
    # (max_tokens; without one, a token per byte of what came back).
    bound = Usage(input_tokens=input_bound,
                  output_tokens=output_cap or _answer_bytes(completion),
                  reasoning_tokens=min(usage.reasoning_tokens, output_cap or usage.reasoning_tokens))
    return dataclasses.replace(completion, usage=bound, usage_status="suspect",
                               usage_note="; ".join(problems)[:500] + " (billed at the request's worst case)")
