"""Usage a server reports is untrusted input: checked against what the request could have produced.

Enters: a parsed Completion, the request it answers, and the problems found while reading the raw
counts. Leaves: the Completion with `usage_status`:
* "reported": the counts are non-negative integers within the request's bounds;
* "suspect": a count was not a number, was negative, or exceeded what the request could produce
  (prompt tokens above the prompt's bytes plus template overhead plus a hidden system prompt's
  allowance; output above max_tokens (UNCAPPED_OUTPUT_TOKENS without one) plus the reasoning a
  provider may count apart, never more reasoning than the reasoning text it returned has bytes;
  cached above prompt; reasoning above output). The answer is kept; usage is billed at the request's
  worst-case bound and the problems are named in `usage_note`;
* "estimated": the server reported no usage: prompt bytes / 4 and answer bytes / 4 tokens (the
  budget's default bytes per token), named as an estimate.
The summary counts both; nothing here raises.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from typing import Any

from harness.common.exchange import ChatRequest, Completion, Usage
from harness.spend.budget import DEFAULT_BYTES_PER_TOKEN, max_output_tokens, prompt_bytes, prompt_token_bound

_OUTPUT_SLACK = 16  # tokens a provider may count beyond max_tokens (end-of-turn markers)
# Tokens never outnumber bytes, but a provider may add a hidden system prompt (tool use, thinking)
# of a few hundred tokens.
_PROMPT_SLACK = 512
# The output bound of a request sent without max_tokens (the harness always sends one; a config's
# extra_body may not): a server claiming more than this for one answer is not believed.
UNCAPPED_OUTPUT_TOKENS = 131072


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


# Unicode categories that draw nothing alone: format (zero-width spaces and joiners, word joiners,
# byte-order marks), control, separators, unassigned, combining marks; and letters drawn blank.
_INVISIBLE = frozenset({"Cf", "Cc", "Cn", "Co", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")  # Hangul fillers, braille blank, Mongolian vowel separator


def is_blank(text: str | None) -> bool:
    """No visible character: empty, whitespace, or only characters that draw nothing (_INVISIBLE)."""
    for ch in text or "":  # stops at the first visible character: at once for most answers
        if not ch.isspace() and ch not in _BLANK_LETTERS and unicodedata.category(ch) not in _INVISIBLE:
            return False
    return True


def _answer_bytes(completion: Completion) -> int:
    return len((completion.text + (completion.reasoning or "")).encode("utf-8", "surrogatepass"))


def vet(completion: Completion, request: ChatRequest, problems: list[str] | None = None) -> Completion:
    """The completion with its usage checked (see the module docstring) and its finish reason made
    honest: every provider's name for the token limit is "length", and so is an answer that used all
    of max_tokens whatever reason the server gave (a server saying "stop" there cut it off unsaid)."""
    return _cut_at_limit(_vet_usage(completion, request, problems), request)


# Every provider's name for "stopped at the token limit": OpenAI, DeepSeek, vLLM "length"; Anthropic
# "max_tokens" and "model_context_window_exceeded"; Gemini "MAX_TOKENS"; Responses "max_output_tokens".
_CUT_AT_LIMIT = frozenset({"length", "max_tokens", "max_output_tokens", "model_context_window_exceeded"})


def _cut_at_limit(completion: Completion, request: ChatRequest) -> Completion:
    reason = completion.finish_reason
    if isinstance(reason, str) and reason.lower() in _CUT_AT_LIMIT:
        return completion if reason == "length" else dataclasses.replace(completion, finish_reason="length")
    cap = max_output_tokens(request)
    if completion.usage_status != "reported" or not cap or completion.usage.output_tokens < cap:
        return completion
    note = f"finish_reason {reason!r} with all {cap} max_tokens used: counted as cut off at the limit"
    return dataclasses.replace(completion, finish_reason="length",
                               usage_note="; ".join(n for n in (completion.usage_note, note) if n))


def _vet_usage(completion: Completion, request: ChatRequest, problems: list[str] | None = None) -> Completion:
    if not completion.usage_reported:
        output = math.ceil(_answer_bytes(completion) / DEFAULT_BYTES_PER_TOKEN)
        cap = max_output_tokens(request)
        estimate = Usage(input_tokens=math.ceil(prompt_bytes(request) / DEFAULT_BYTES_PER_TOKEN),
                         output_tokens=min(output, cap) if cap else output)
        return dataclasses.replace(completion, usage=estimate, usage_status="estimated",
                                   usage_note=f"no usage reported: estimated at {DEFAULT_BYTES_PER_TOKEN:g} bytes per token")
    usage, problems = completion.usage, list(problems or [])
    input_bound = prompt_token_bound(request)
    output_cap = max_output_tokens(request) or UNCAPPED_OUTPUT_TOKENS
    # Reasoning a provider counts apart from max_tokens widens the output bound only as far as the
    # reasoning text it sent: a count alone could widen it without limit.
    reasoning_seen = min(usage.reasoning_tokens, len((completion.reasoning or "").encode("utf-8", "surrogatepass")))
    if usage.input_tokens == 0 and prompt_bytes(request) > 0:
        problems.append("0 prompt tokens for a prompt that is not empty")
    if usage.output_tokens == 0 and _answer_bytes(completion) > 0:
        problems.append("0 output tokens for an answer that is not empty")
    if usage.input_tokens > input_bound + _PROMPT_SLACK:
        problems.append(f"{usage.input_tokens} prompt tokens for a prompt of at most {input_bound}")
    if usage.cached_input_tokens > usage.input_tokens:
        problems.append(f"{usage.cached_input_tokens} cached of {usage.input_tokens} prompt tokens")
    if usage.cache_write_input_tokens > usage.input_tokens:
        problems.append(f"{usage.cache_write_input_tokens} cache-write of {usage.input_tokens} prompt tokens")
    if usage.reasoning_tokens > usage.output_tokens:
        problems.append(f"{usage.reasoning_tokens} reasoning of {usage.output_tokens} output tokens")
    if usage.output_tokens > output_cap + reasoning_seen + _OUTPUT_SLACK:
        problems.append(f"{usage.output_tokens} output tokens with max_tokens={output_cap}"
                        + (f" and {reasoning_seen} tokens of reasoning text" if reasoning_seen else ""))
    if not problems:
        return completion
    # The worst case this request could have cost: every prompt token uncached, every output token used
    # (max_tokens and the reasoning text sent; without max_tokens, a token per byte of what came back).
    output_bound = (max_output_tokens(request) + reasoning_seen) if max_output_tokens(request) else _answer_bytes(completion)
    bound = Usage(input_tokens=input_bound, output_tokens=output_bound,
                  reasoning_tokens=min(usage.reasoning_tokens, output_bound))
    return dataclasses.replace(completion, usage=bound, usage_status="suspect",
                               usage_note="; ".join(problems)[:500] + " (billed at the request's worst case)")
