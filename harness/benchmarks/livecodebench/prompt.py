"""LiveCodeBench's chat prompt and code extraction.

Copied from LiveCodeBench/LiveCodeBench (lcb_runner/prompts/code_generation.py at commit
4fa15949edfc48871be612fc83dcb7961b012ad3, `PromptConstants` and `get_generic_question_template_answer`,
used for `LMStyle.OpenAIChat` / `LMStyle.DeepSeekAPI`): a system message, then one user message with
`### Question:`, the format block (the starter code, or the stdin template) and `### Answer:`.

Extraction differs from theirs on purpose, and the task config names it: lcb_runner's `extract_code`
(lcb_runner/utils/extraction_utils.py, commit da85cb72) takes the lines between the FIRST two lines that
contain ```; we take the LAST fenced block by default (`code_block: last`), because a model that drafts
and then corrects itself puts its final answer last. `code_block: first` reproduces theirs exactly.
"""

from __future__ import annotations

from typing import Any

# The extraction rule belongs to scoring; re-exported here beside the prompt it answers.
from harness.scoring.extract import CodeBlock, extract_code  # noqa: F401

SYSTEM_MESSAGE_GENERIC = (
    "You are an expert Python programmer. You will be given a question (problem specification) and will "
    "generate a correct Python program that matches the specification and passes all tests. You will NOT "
    "return anything except for the program."
)
FORMATTING_MESSAGE_WITH_STARTER_CODE = (
    "You will use the following starter code to write the solution to the problem and enclose your code "
    "within delimiters."
)
FORMATTING_WITHOUT_STARTER_CODE = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on "
    "the sample inputs). Enclose your code within delimiters as follows."
)



def question_prompt(question_content: str, starter_code: str) -> str:
    """The user message, character for character as `get_generic_question_template_answer`."""
    prompt = f"### Question:\n{question_content}\n\n"
    if starter_code:
        prompt += f"### Format: {FORMATTING_MESSAGE_WITH_STARTER_CODE}\n"
        prompt += f"```python\n{starter_code}\n```\n\n"
    else:
        prompt += f"### Format: {FORMATTING_WITHOUT_STARTER_CODE}\n"
        prompt += "```python\n# YOUR CODE HERE\n```\n\n"
    prompt += "### Answer: (use the provided format with backticks)\n\n"
    return prompt


def chat_messages(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The OpenAIChat-style messages for one problem document."""
    return [
        {"role": "system", "content": SYSTEM_MESSAGE_GENERIC},
        {"role": "user", "content": question_prompt(doc["question_content"], doc.get("starter_code") or "")},
    ]
