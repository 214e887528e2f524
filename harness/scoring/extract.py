"""Answer extraction: turn a model's final-answer text (reasoning already removed) into an answer.

Every extractor is a pure function `str -> Extraction`. `Extraction.stage` names the rule that
produced the answer, so a report can say how many answers each rule caught. Stage names:

  "answer_is"       "... answer is (X)" / "the answer is N" style statement
  "answer_colon"    "Answer: X" / "answer: N"
  "last_letter"     MMLU-Pro official last resort: the last standalone capital letter A-J
  "boxed"           LaTeX \\boxed{X}
  "bold_letter"     a markdown-bold lone option letter such as **(B)** or **B**
  "final_answer"    GSM8K: "The final answer is N" / "Final answer: N" / "The answer is N"
  "hash_marker"     GSM8K: the number after the last "####"
  "last_number"     GSM8K fallback: the last number in the text
  "fenced_block"    LiveCodeBench: the code of a ```-fenced block
  "random_fallback" MMLU-Pro summary only: a seeded random letter standing in for a miss
  "none"            nothing matched (answer is None)

MMLU-Pro (TIGER-AI-Lab/MMLU-Pro, evaluate_from_api.py):
  mmlu_pro_official       their extraction chain, exactly (including their `**` stripping)
  mmlu_pro_random_fallback what their summary does with a miss (seeded random letter)
  mmlu_pro_last           zero-shot chat CoT: the last "answer is (X)", then the last "Answer: X"
  mmlu_pro_strict         their first regex only, on the raw text
  mmlu_pro_lenient        the last explicit answer statement, markdown/LaTeX tolerant, then their last-letter
GSM8K:
  normalize_number, gsm8k_reference ("#### N"), gsm8k_final_line, gsm8k_chat, gsm8k_strict, gsm8k_lenient
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Extraction:
    answer: str | None
    stage: str

    @property
    def found(self) -> bool:
        return self.answer is not None


NONE = Extraction(None, "none")

# --------------------------------------------------------------------------------------------- MMLU-Pro

# Copied from TIGER-AI-Lab/MMLU-Pro, evaluate_from_api.py (stored version at commit
# 2a7ec7e4d36766256a1280e574c330d5537adfde), functions extract_answer -> extract_again -> extract_final,
# called from single_request after `response = response.replace('**', '')`. The same three regexes are
# in evaluate_from_local.py and compute_accuracy.py @ 453c1d99 (level 'l2'); another stored version of
# compute_accuracy.py (@ 05c6997b) used r"[A-J](?=[^A-J]*$)" (any last capital A-J, no word boundary).
OFFICIAL_ANSWER_IS = re.compile(r"answer is \(?([A-J])\)?")  # extract_answer; re.search = FIRST match
OFFICIAL_ANSWER_COLON = re.compile(r".*[aA]nswer:\s*([A-J])")  # extract_again; no DOTALL: first line
# that has a match, the last "answer:" on it (\s* may still cross newlines)
OFFICIAL_LAST_LETTER = re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)  # extract_final

# The stages mmlu_pro_official can report, in chain order.
OFFICIAL_STAGES = ("answer_is", "answer_colon", "last_letter", "none")
# evaluate_from_api.py update_result: `random.seed(12345)` right before every miss's draw.
OFFICIAL_FALLBACK_SEED = 12345


# Every position where their extract_again pattern minus the leading ".*" matches (overlaps included).
_ANSWER_COLON_AT = re.compile(r"(?=[aA]nswer:\s*([A-J]))")


def official_answer_colon(text: str) -> str | None:
    """`OFFICIAL_ANSWER_COLON.search(text).group(1)` in linear time (their regex backtracks
    quadratically over long lines without a match: ~2 s on one 17,000-character line).

    re.search tries start positions left to right and `.*` cannot cross a newline, so the match comes
    from the first line holding an occurrence start; greedy `.*` then backtracks to the rightmost
    occurrence start on that line. tests/test_extract.py checks the equivalence on random texts."""
    first = _ANSWER_COLON_AT.search(text)
    if first is None:
        return None
    line_end = text.find("\n", first.start())
    if line_end < 0:
        line_end = len(text)
    last = first
    for match in _ANSWER_COLON_AT.finditer(text, first.start()):
        if match.start() >= line_end:
            break
        last = match
    return last.group(1)


def mmlu_pro_official(text: str) -> Extraction:
    """TIGER-AI-Lab/MMLU-Pro evaluate_from_api.py: single_request strips '**' from the response,
    then extract_answer (first 'answer is (X)'), extract_again ('.*[aA]nswer:\\s*X'), extract_final
    (last standalone capital A-J). The letter is case-sensitive at every stage."""
    text = text.replace("**", "")
    match = OFFICIAL_ANSWER_IS.search(text)
    if match:
        return Extraction(match.group(1), "answer_is")
    letter = official_answer_colon(text)  # == OFFICIAL_ANSWER_COLON.search(text).group(1)
    if letter:
        return Extraction(letter, "answer_colon")
    match = OFFICIAL_LAST_LETTER.search(text)
    if match:
        return Extraction(match.group(0), "last_letter")
    return NONE


def mmlu_pro_random_fallback(extraction: Extraction, seed_key: str | int | None = None, *,
                             n_options: int = 10, seed: int = OFFICIAL_FALLBACK_SEED) -> Extraction:
    """What the official summary counts for a miss; an extraction that found a letter is returned as is.

    seed_key=None reproduces TIGER-AI-Lab/MMLU-Pro evaluate_from_api.py `update_result` exactly:
    `random.seed(12345); x = random.randint(0, len(each["options"]) - 1)` with the options after the
    "N/A" ones were dropped, scored as `x == answer_index`. Because they re-seed with the same constant
    before every draw, every miss among questions with the same number of options gets the SAME letter
    (10 options: index 6, "G"; their compute_accuracy.py's `random.choice("A".."J")` also gives "G").

    With a seed_key (e.g. the question_id) the draw is instead seeded per question,
    `random.Random(f"{seed}:{seed_key}")`: still reproducible, but misses no longer all land on one
    letter. This is our variant, not theirs.
    """
    if extraction.answer is not None:
        return extraction
    if n_options < 1:
        raise ValueError(f"n_options must be at least 1, got {n_options}")
    rng = random.Random(seed) if seed_key is None else random.Random(f"{seed}:{seed_key}")
    return Extraction(LETTERS[rng.randint(0, n_options - 1)], "random_fallback")


_LAST_ANSWER_COLON = re.compile(r"[aA]nswer:\s*\(?([A-J])\)?")


def mmlu_pro_last(text: str) -> Extraction:
    """Zero-shot chat CoT: the LAST 'answer is (X)', else the LAST 'Answer: X'; nothing else.
    '**' is stripped first, as the official script does."""
    text = text.replace("**", "")
    for stage, pattern in (("answer_is", OFFICIAL_ANSWER_IS), ("answer_colon", _LAST_ANSWER_COLON)):
        matches = list(pattern.finditer(text))
        if matches:
            return Extraction(matches[-1].group(1), stage)
    return NONE


def mmlu_pro_strict(text: str) -> Extraction:
    """Only the official first regex (first 'answer is (X)'), on the raw text: no '**' stripping."""
    match = OFFICIAL_ANSWER_IS.search(text)
    return Extraction(match.group(1), "answer_is") if match else NONE


# An option letter in an explicit answer statement: "(c)" or a bare capital not followed by a
# word character ("Apple" is not "A"), or a bare lowercase letter that ends the line ("answer: c").
_LENIENT_LETTER = r"(?:\(\s*([A-Ja-j])\s*\)|([A-J])(?![A-Za-z0-9])|([a-j])(?=[ \t]*[.)]?[ \t]*(?:\n|$)))"
_LENIENT_DECOR = r"(?:\s|\$|\\\(|\\\[|\\boxed\{|\\text(?:bf)?\{|\{)*"
_LENIENT_PATTERNS = (
    ("answer_is", re.compile(r"(?i:answer)\s+is\s*:?" + _LENIENT_DECOR + _LENIENT_LETTER)),
    ("answer_colon", re.compile(r"(?i:answer)\s*:" + _LENIENT_DECOR + _LENIENT_LETTER)),
    ("boxed", re.compile(r"\\boxed\{\s*(?:\\text(?:bf)?\{\s*)?" + _LENIENT_LETTER)),
)
_BOLD_LETTER = re.compile(r"(?:\*\*|__)\s*\(?([A-J])\)?[.:]?\s*(?:\*\*|__)")


def _strip_emphasis(text: str) -> tuple[str, list[int]]:
    """text without '**' and '__', and for each kept character its index in the original text."""
    kept: list[str] = []
    index: list[int] = []
    i = 0
    while i < len(text):
        if text.startswith("**", i) or text.startswith("__", i):
            i += 2
            continue
        kept.append(text[i])
        index.append(i)
        i += 1
    return "".join(kept), index


def mmlu_pro_lenient(text: str) -> Extraction:
    """The LAST explicit answer statement anywhere in the text: 'answer is (X)' (any case of
    'answer'), 'Answer: X', '\\boxed{X}', markdown bold '**(X)**', tolerating markdown/LaTeX around
    the letter and '(c)' / line-final lowercase letters; else the official last standalone letter."""
    stripped, index = _strip_emphasis(text)
    # (position of the letter in the original text, letter, stage); on a tie (one letter matched by
    # two rules, e.g. "The answer is **(B)**") the rule listed first keeps it.
    best: tuple[int, str, str] | None = None
    for stage, pattern in _LENIENT_PATTERNS:
        for match in pattern.finditer(stripped):
            group = next(i for i, g in enumerate(match.groups(), start=1) if g)
            at = index[match.start(group)]
            if best is None or at > best[0]:
                best = (at, match.group(group).upper(), stage)
    for match in _BOLD_LETTER.finditer(text):
        if best is None or match.start(1) > best[0]:
            best = (match.start(1), match.group(1), "bold_letter")
    if best is not None:
        return Extraction(best[1], best[2])
    match = OFFICIAL_LAST_LETTER.search(stripped)
    return Extraction(match.group(0), "last_letter") if match else NONE


# ------------------------------------------------------------------------------------------------ GSM8K

# A number as written in an answer: optional sign (not a minus between two operands), optional "$",
# digits with thousands commas, optional decimals.
_NUMBER = r"(?:(?<![\w)\]])[-−]\s?)?\$?\s?\d(?:[\d,]*\d)?(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_DECOR = r"(?:\s|\*|:|\$|\\\(|\\\[|\\boxed\{|\\text(?:bf)?\{|\{)*"


def normalize_number(s: str) -> str:
    """Canonical text of a numeric answer: strips surrounding whitespace and '**', '$', thousands
    commas, a leading '+', a trailing '.', and zero decimals ("1,234.00" -> "1234", "18." -> "18",
    "-$5" -> "-5", "2.50" -> "2.5", "−3" -> "-3"). Text that is not a number comes back only stripped."""
    t = s.strip().replace("**", "").strip()
    t = t.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    t = t.rstrip(".")
    if t.startswith("+"):
        t = t[1:]
    if not re.fullmatch(r"-?(?:\d+(?:\.\d*)?|\.\d+)", t):
        return t
    try:
        value = Decimal(t)
    except InvalidOperation:  # pragma: no cover - the regex above only lets numbers through
        return t
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def gsm8k_reference(text: str) -> Extraction:
    """GSM8K's own grader format: the number after the LAST '####' (reference answers end "#### N")."""
    at = text.rfind("####")
    if at < 0:
        return NONE
    match = re.match(r"\s*(" + _NUMBER + ")", text[at + 4:])
    return Extraction(normalize_number(match.group(1)), "hash_marker") if match else NONE


_FINAL_STATEMENT = re.compile(
    r"(?i:(?:\bfinal\s+answer\s*(?:is\b|:)|\bthe\s+answer\s+is\b))" + _DECOR + r"(" + _NUMBER + ")")


def _last(pattern: re.Pattern[str], text: str, stage: str) -> Extraction:
    matches = list(pattern.finditer(text))
    return Extraction(normalize_number(matches[-1].group(1)), stage) if matches else NONE


def gsm8k_final_line(text: str) -> Extraction:
    """Chat CoT: the LAST "The final answer is N" / "Final answer: N" / "The answer is N" (any case,
    markdown bold removed, '$', '\\boxed{', '\\(' tolerated before the number)."""
    return _last(_FINAL_STATEMENT, text.replace("**", ""), "final_answer")


def gsm8k_last_number(text: str) -> Extraction:
    matches = list(_NUMBER_RE.finditer(text.replace("**", "")))
    return Extraction(normalize_number(matches[-1].group(0)), "last_number") if matches else NONE


def gsm8k_chat(text: str) -> Extraction:
    """The final-answer statement (gsm8k_final_line), else the last number in the text."""
    found = gsm8k_final_line(text)
    return found if found.found else gsm8k_last_number(text)


_STRICT_FINAL = re.compile(r"The final answer is (" + _NUMBER + ")")


def gsm8k_strict(text: str) -> Extraction:
    """Only the exact, case-sensitive "The final answer is N" (the last one), on the raw text."""
    return _last(_STRICT_FINAL, text, "final_answer")


_LM_EVAL_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")  # lm-eval tasks/gsm8k/gsm8k.yaml, filter strict-match


def gsm8k_lm_eval_strict(text: str) -> Extraction:
    """lm-eval's gsm8k `strict-match`: the FIRST "#### N" (its regex filter keeps the first match), with
    the ',' / '$' / trailing '.' its exact_match ignores removed by normalize_number."""
    match = _LM_EVAL_STRICT.search(text)
    if not match or not re.search(r"\d", match.group(1)):
        return NONE
    return Extraction(normalize_number(match.group(1).rstrip(".,")), "hash_marker")


_LENIENT_GSM8K = (
    ("final_answer", _FINAL_STATEMENT),
    ("boxed", re.compile(r"\\boxed\{\s*(?:\\text(?:bf)?\{\s*)?\\?\$?\s*(" + _NUMBER + ")")),
    ("answer_colon", re.compile(r"(?i:\banswer)\s*:" + _DECOR + r"(" + _NUMBER + ")")),
    ("hash_marker", re.compile(r"####\s*(" + _NUMBER + ")")),
)


def gsm8k_lenient(text: str) -> Extraction:
    """The LAST explicit answer statement of any kind (final-answer phrase, \\boxed{N}, 'answer: N',
    '#### N'), markdown removed; else the last number."""
    stripped = text.replace("**", "").replace("__", "")
    best: tuple[int, str, str] | None = None
    for stage, pattern in _LENIENT_GSM8K:
        for match in pattern.finditer(stripped):
            if best is None or match.end() > best[0]:
                best = (match.end(), match.group(1), stage)
    if best is not None:
        return Extraction(normalize_number(best[1]), best[2])
    return gsm8k_last_number(stripped)


# --------------------------------------------------------------------------------------- LiveCodeBench


CodeBlock = Literal["first", "last"]


def extract_code(response: str, which: CodeBlock = "last") -> str:
    """The code of one fenced block: lines strictly between two lines containing ```. "first" is
    lcb_runner's rule (first and second fence lines); "last" takes the last complete block (fence lines pair up in order).
    No complete block: "" (graded as a failure, as theirs)."""
    lines = response.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    blocks = list(zip(fences[0::2], fences[1::2]))  # fence lines pair up in order: open, close, open, ...
    if not blocks:
        return ""
    start, end = blocks[0] if which == "first" else blocks[-1]
    return "\n".join(lines[start + 1:end])


def lcb_code_last(text: str) -> Extraction:
    """The last complete ```-fenced block (our default; LiveCodeBench's prompt asks for one block)."""
    code = extract_code(text, "last")
    return Extraction(code, "fenced_block") if code.strip() else NONE


def lcb_code_first(text: str) -> Extraction:
    """The first fenced block: lcb_runner's extract_code exactly."""
    code = extract_code(text, "first")
    return Extraction(code, "fenced_block") if code.strip() else NONE


# --------------------------------------------------------------------------------------------- registry

EXTRACTORS: dict[str, Callable[[str], Extraction]] = {
    "mmlu_pro_official": mmlu_pro_official,
    "mmlu_pro_last": mmlu_pro_last,
    "mmlu_pro_strict": mmlu_pro_strict,
    "mmlu_pro_lenient": mmlu_pro_lenient,
    "gsm8k_reference": gsm8k_reference,
    "gsm8k_final_line": gsm8k_final_line,
    "gsm8k_last_number": gsm8k_last_number,
    "gsm8k_chat": gsm8k_chat,
    "gsm8k_strict": gsm8k_strict,
    "gsm8k_lenient": gsm8k_lenient,
    "gsm8k_lm_eval_strict": gsm8k_lm_eval_strict,
    "lcb_code_last": lcb_code_last,
    "lcb_code_first": lcb_code_first,
}

# For the extraction-sensitivity report: per protocol family, the extractor names to compare.
SENSITIVITY_RULES: dict[str, dict[str, str]] = {
    "mmlu_pro": {"strict": "mmlu_pro_strict", "official": "mmlu_pro_official", "lenient": "mmlu_pro_lenient"},
    # lm-eval's gsm8k (5-shot "#### N" answers): its strict-match and its flexible-extract (the last number).
    "gsm8k": {"strict": "gsm8k_lm_eval_strict", "official": "gsm8k_last_number", "lenient": "gsm8k_lenient"},
    # our gsm8k_chat (8-shot chain of thought ending "The final answer is N").
    "gsm8k_chat": {"strict": "gsm8k_strict", "official": "gsm8k_chat", "lenient": "gsm8k_lenient"},
}


def gold_answer(family: str, doc: dict) -> str | None:
    """The reference answer of a document, in the form this family's extractors return."""
    if family == "mmlu_pro":
        return doc["answer"]  # the letter, as TIGER-Lab's scripts compare it
    if family in ("gsm8k", "gsm8k_chat"):
        return gsm8k_reference(doc["answer"]).answer
    raise KeyError(f"unknown answer family '{family}'; known: {sorted(SENSITIVITY_RULES)}")


def extract(name: str, text: str) -> Extraction:
    """Run the registered extractor `name` on `text`."""
    try:
        extractor = EXTRACTORS[name]
    except KeyError:
        raise KeyError(f"unknown extractor '{name}'; known: {sorted(EXTRACTORS)}") from None
    return extractor(text)
