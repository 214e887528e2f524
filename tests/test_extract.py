"""Answer extraction on tricky outputs: exact answers and the stage (rule) that produced them."""

import random
import re
import time

import pytest

from harness.scoring.extract import (
    EXTRACTORS,
    LETTERS,
    NONE,
    OFFICIAL_ANSWER_COLON,
    OFFICIAL_ANSWER_IS,
    OFFICIAL_LAST_LETTER,
    SENSITIVITY_RULES,
    Extraction,
    extract,
    gsm8k_chat,
    gsm8k_final_line,
    gsm8k_lenient,
    gsm8k_reference,
    gsm8k_strict,
    mmlu_pro_last,
    mmlu_pro_lenient,
    mmlu_pro_official,
    mmlu_pro_random_fallback,
    mmlu_pro_strict,
    normalize_number,
    official_answer_colon,
)


def E(answer, stage):
    return Extraction(answer, stage)


# ------------------------------------------------------------------------------------------- MMLU-Pro

def test_two_answer_is_statements_official_takes_the_first_last_takes_the_last():
    text = "So the answer is (B). Hmm, re-checking the units, the answer is (D)."
    assert mmlu_pro_official(text) == E("B", "answer_is")  # their re.search: first match
    assert mmlu_pro_strict(text) == E("B", "answer_is")
    assert mmlu_pro_last(text) == E("D", "answer_is")
    assert mmlu_pro_lenient(text) == E("D", "answer_is")


def test_markdown_bold_answer():
    text = "Putting it together, the answer is **(B)**"
    # The official script strips '**' from the response before extracting; strict uses the raw text.
    assert mmlu_pro_official(text) == E("B", "answer_is")
    assert mmlu_pro_strict(text) == NONE
    assert mmlu_pro_last(text) == E("B", "answer_is")
    assert mmlu_pro_lenient(text) == E("B", "answer_is")


def test_lone_bold_letter_is_only_an_answer_statement_for_lenient():
    text = "Both effects point the same way.\n\n**(B)**"
    assert mmlu_pro_official(text) == E("B", "last_letter")
    assert mmlu_pro_strict(text) == NONE
    assert mmlu_pro_last(text) == NONE
    assert mmlu_pro_lenient(text) == E("B", "bold_letter")


def test_answer_colon_with_bold_letter():
    assert mmlu_pro_official("Answer: **C**") == E("C", "answer_colon")
    assert mmlu_pro_last("Answer: **C**") == E("C", "answer_colon")
    assert mmlu_pro_lenient("Answer: **C**") == E("C", "answer_colon")
    assert mmlu_pro_strict("Answer: **C**") == NONE


def test_boxed_letter():
    text = r"Therefore $\boxed{E}$."
    assert mmlu_pro_lenient(text) == E("E", "boxed")
    assert mmlu_pro_official(text) == E("E", "last_letter")
    assert mmlu_pro_last(text) == NONE


def test_preamble_mentioning_letters_before_the_answer():
    text = "Option A looks tempting and B is close, but after checking, the answer is (C). Not D."
    assert mmlu_pro_official(text) == E("C", "answer_is")
    assert mmlu_pro_last(text) == E("C", "answer_is")
    assert mmlu_pro_lenient(text) == E("C", "answer_is")


def test_official_last_letter_picks_any_standalone_capital_even_a_pronoun():
    # Their extract_final is r"\b[A-J]\b(?!.*\b[A-J]\b)" with re.DOTALL: "I" is a standalone A-J letter.
    text = "Options A and C both look plausible.\nI am not sure."
    assert mmlu_pro_official(text) == E("I", "last_letter")
    assert mmlu_pro_lenient(text) == E("I", "last_letter")
    assert mmlu_pro_last(text) == NONE
    assert mmlu_pro_strict(text) == NONE


def test_answer_colon_official_takes_the_first_line_that_has_one():
    # '.*[aA]nswer:\s*([A-J])' without DOTALL: the first line with a match wins (its last "answer:").
    text = "Draft answer: A\nAfter review.\nFinal answer: C"
    assert mmlu_pro_official(text) == E("A", "answer_colon")
    assert mmlu_pro_last(text) == E("C", "answer_colon")
    assert mmlu_pro_lenient(text) == E("C", "answer_colon")


def test_answer_colon_may_cross_a_newline_like_theirs():
    assert mmlu_pro_official("Answer:\nF") == E("F", "answer_colon")


def _their_chain(text):
    """evaluate_from_api.py extract_answer/extract_again/extract_final on the '**'-stripped response,
    with their regexes applied literally."""
    text = text.replace("**", "")
    match = re.search(r"answer is \(?([A-J])\)?", text)
    if match:
        return match.group(1)
    match = re.search(r'.*[aA]nswer:\s*([A-J])', text)
    if match:
        return match.group(1)
    match = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", text, re.DOTALL)
    return match.group(0) if match else None


def test_official_chain_equals_their_literal_regexes_on_random_texts():
    pieces = ["Answer:", "answer:", "Answer: ", "answer is ", "the answer is (", "**", " ", "  ", "\n", "\t",
              "A", "B", "J", "K", "a", "(", ")", "x", "I", "Answer", "nswer:", ".", "Apple"]
    rng = random.Random(2024)
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        assert mmlu_pro_official(text).answer == _their_chain(text), repr(text)
        found = OFFICIAL_ANSWER_COLON.search(text)
        assert official_answer_colon(text) == (found.group(1) if found else None), repr(text)
    assert OFFICIAL_ANSWER_IS.pattern == r"answer is \(?([A-J])\)?"
    assert OFFICIAL_ANSWER_COLON.pattern == r".*[aA]nswer:\s*([A-J])"
    assert (OFFICIAL_LAST_LETTER.pattern, OFFICIAL_LAST_LETTER.flags & re.DOTALL) == \
        (r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)


def test_official_answer_colon_is_fast_on_long_lines():
    text = "the value is computed as x plus y and so on " * 400  # their regex: ~2 s here
    start = time.perf_counter()
    assert mmlu_pro_official(text) == NONE
    assert mmlu_pro_official(text + "\nAnswer: Answer: B") == E("B", "answer_colon")  # overlapping starts
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("extractor", [mmlu_pro_official, mmlu_pro_last, mmlu_pro_strict, mmlu_pro_lenient])
def test_no_answer_at_all(extractor):
    assert extractor("i cannot tell from the information given.") == E(None, "none")
    assert extractor("") == E(None, "none")


def test_ten_options_up_to_j():
    assert mmlu_pro_official("The answer is (J)") == E("J", "answer_is")
    assert mmlu_pro_official("The answer is J.") == E("J", "answer_is")
    assert mmlu_pro_last("the answer is (A) ... no, the answer is (J)") == E("J", "answer_is")
    # K is not an option letter anywhere in their chain.
    assert mmlu_pro_official("the answer is (K)") == NONE


def test_lowercase_letters_are_not_letters_to_the_official_chain():
    # Their letter class is [A-J] at every stage, with no IGNORECASE.
    assert mmlu_pro_official("answer: c") == NONE
    assert mmlu_pro_official("The answer is (c)") == NONE
    assert mmlu_pro_last("answer: c") == NONE
    assert mmlu_pro_lenient("answer: c") == E("C", "answer_colon")
    assert mmlu_pro_lenient("The Answer is (c)") == E("C", "answer_is")


def test_official_answer_is_is_case_sensitive_on_answer_but_answer_colon_is_not():
    assert mmlu_pro_official("ANSWER IS (B)") == E("B", "last_letter")
    assert mmlu_pro_official("ANSWER: B") == E("B", "last_letter")
    assert mmlu_pro_official("Answer: B") == E("B", "answer_colon")


def test_official_answer_is_takes_a_letter_that_starts_a_word_lenient_does_not():
    # No boundary after the letter in r"answer is \(?([A-J])\)?": "Apple" yields "A".
    assert mmlu_pro_official("The answer is Apple") == E("A", "answer_is")
    assert mmlu_pro_lenient("The answer is Apple") == NONE
    assert mmlu_pro_lenient("The answer is a bit unclear") == NONE


# -------------------------------------------------------------------------------- seeded random fallback

def _their_draw(n_options: int) -> int:
    """evaluate_from_api.py update_result, verbatim apart from the names."""
    random.seed(12345)
    return random.randint(0, n_options - 1)


def test_official_fallback_reproduces_their_constant_reseed():
    state = random.getstate()
    for n in range(1, 11):
        expected = LETTERS[_their_draw(n)]
        random.setstate(state)
        assert mmlu_pro_random_fallback(NONE, n_options=n) == E(expected, "random_fallback")
        assert expected in LETTERS[:n]
    # Every 10-option miss gets the same letter: index 6.
    assert mmlu_pro_random_fallback(NONE) == E("G", "random_fallback")
    assert random.getstate() == state  # our draw leaves the global generator alone


def test_per_question_fallback_is_reproducible_and_within_the_options():
    draws = {qid: mmlu_pro_random_fallback(NONE, qid, n_options=4) for qid in range(200)}
    assert all(d.stage == "random_fallback" and d.answer in "ABCD" for d in draws.values())
    assert draws == {qid: mmlu_pro_random_fallback(NONE, qid, n_options=4) for qid in range(200)}
    assert {d.answer for d in draws.values()} == set("ABCD")  # not one constant letter
    assert mmlu_pro_random_fallback(NONE, "q7", seed=1) != mmlu_pro_random_fallback(NONE, "q7", seed=2) or \
        mmlu_pro_random_fallback(NONE, "q8", seed=1) != mmlu_pro_random_fallback(NONE, "q8", seed=2)


def test_fallback_keeps_a_found_answer():
    found = E("C", "answer_is")
    assert mmlu_pro_random_fallback(found) is found
    assert mmlu_pro_random_fallback(found, "q1", n_options=2) is found
    with pytest.raises(ValueError):
        mmlu_pro_random_fallback(NONE, n_options=0)


# ---------------------------------------------------------------------------------------------- GSM8K

@pytest.mark.parametrize("raw, expected", [
    ("1,234.00", "1234"), ("$1,234.00", "1234"), (" **42** ", "42"), ("18.", "18"), ("-5", "-5"),
    ("−7", "-7"), ("$-3.0", "-3"), ("+3", "3"), ("2.50", "2.5"), ("0.0", "0"), ("1,000", "1000"),
    ("007", "7"), ("three", "three"),
])
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


def test_reference_grader_takes_the_number_after_the_last_hash_marker():
    assert gsm8k_reference("She pays 10 * 100 = 1000.\n#### 1,000") == E("1000", "hash_marker")
    assert gsm8k_reference("#### 3\nOops, recount.\n#### 4") == E("4", "hash_marker")
    assert gsm8k_reference("#### -12") == E("-12", "hash_marker")
    assert gsm8k_reference("The answer is 5") == NONE
    assert gsm8k_reference("#### none") == NONE


def test_final_line_dollars_and_thousands():
    text = "Total cost: 2 * $617 = $1,234.\nThe final answer is $1,234.00"
    assert gsm8k_final_line(text) == E("1234", "final_answer")
    assert gsm8k_chat(text) == E("1234", "final_answer")
    assert gsm8k_strict(text) == E("1234", "final_answer")
    assert gsm8k_lenient(text) == E("1234", "final_answer")


def test_final_line_negative_numbers():
    assert gsm8k_chat("The temperature drops 8 degrees from 3.\nThe final answer is -5") == E("-5", "final_answer")
    assert gsm8k_chat("Final answer: −5") == E("-5", "final_answer")
    # A minus between two operands is not a sign.
    assert gsm8k_chat("He has 10-4") == E("4", "last_number")


def test_trailing_dot_and_the_last_statement_wins():
    text = "At first the answer is 16. Wait, I forgot two eggs, so the answer is 18."
    assert gsm8k_final_line(text) == E("18", "final_answer")
    assert gsm8k_chat("So she has 18.") == E("18", "last_number")


def test_final_answer_variants_and_markdown():
    assert gsm8k_final_line("**Final Answer:** 42") == E("42", "final_answer")
    assert gsm8k_final_line("**Final Answer**: 42") == E("42", "final_answer")
    assert gsm8k_final_line(r"The final answer is $\boxed{42}$") == E("42", "final_answer")
    assert gsm8k_strict("The final answer is **42**") == NONE  # strict: raw text, exact phrase only
    assert gsm8k_strict("the final answer is 42") == NONE
    assert gsm8k_chat("The final answer is **42**") == E("42", "final_answer")


def test_chat_falls_back_to_the_last_number():
    assert gsm8k_chat("3 + 5 = 8 apples, then 8 * 2 = 16") == E("16", "last_number")
    assert gsm8k_chat("I do not know.") == NONE


def test_lenient_takes_the_last_explicit_statement_of_any_kind():
    assert gsm8k_lenient(r"so \boxed{7}") == E("7", "boxed")
    assert gsm8k_lenient("The answer is 5.\n#### 6") == E("6", "hash_marker")
    assert gsm8k_lenient("Answer: **1,500**") == E("1500", "answer_colon")
    assert gsm8k_lenient("we get 12 then 13") == E("13", "last_number")
    assert gsm8k_strict(r"so \boxed{7}") == NONE


# ------------------------------------------------------------------------------------------- registry

def test_registry_and_sensitivity_rules_name_real_extractors():
    for family, rules in SENSITIVITY_RULES.items():
        assert set(rules) == {"strict", "official", "lenient"}, family
        assert all(name in EXTRACTORS for name in rules.values())
    assert SENSITIVITY_RULES["mmlu_pro"]["official"] == "mmlu_pro_official"
    for name, extractor in EXTRACTORS.items():
        assert isinstance(extractor("The answer is (B). The final answer is 3"), Extraction), name
        assert extract(name, "") == NONE
    with pytest.raises(KeyError, match="mmlu_pro_official"):
        extract("nope", "x")


def test_extraction_is_frozen():
    with pytest.raises(AttributeError):
        E("A", "answer_is").answer = "B"


def test_gsm8k_sensitivity_rules_fit_each_task():
    """lm-eval's gsm8k answers "#### N": its strict rule is lm-eval's strict-match (the first "#### N"),
    not gsm8k_chat's "The final answer is N" (which read every perfect "#### N" answer as a miss)."""
    from harness.scoring.extract import SENSITIVITY_RULES

    perfect = "3 apples and 4 more make 3 + 4 = 7.\n#### 7"
    assert {rule: extract(name, perfect).answer for rule, name in SENSITIVITY_RULES["gsm8k"].items()} == \
        {"strict": "7", "official": "7", "lenient": "7"}
    chat = "3 + 4 = 7 apples. The final answer is 7"
    assert {rule: extract(name, chat).answer for rule, name in SENSITIVITY_RULES["gsm8k_chat"].items()} == \
        {"strict": "7", "official": "7", "lenient": "7"}
    assert extract("gsm8k_lm_eval_strict", "#### 1,234.\n#### 5").answer == "1234"  # the first, as lm-eval
    assert extract("gsm8k_lm_eval_strict", chat).answer is None and extract("gsm8k_strict", perfect).answer is None
