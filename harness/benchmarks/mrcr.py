"""OpenAI MRCR (multi-round co-reference resolution, hub dataset `openai/mrcr`): the official grader,
the official length bins, and the loader that selects items by needle count, bin and model context.

Where each piece comes from (the hub is unreachable from where this was written; the card was read
through copies that quote it, named here):
- `grade`: the dataset card's `grade` function (huggingface.co/datasets/openai/mrcr, README.md), body
  kept verbatim. Quoted identically by HELM (stanford-crfm/helm, src/helm/benchmark/metrics/
  openai_mrcr_metrics.py: "Adapted from: .../openai/mrcr/blob/204b0d4e8d9ca5c0a90bf942fdb2a5969094adc0/
  README.md"), groq/openbench (openbench/scorers/mrcr.py) and AISBench's MRCR integration.
- bins: the card: "Bins are determined by number of tokens used by prompt + answer in the sample";
  boundaries [4096, 8192], (8192, 16384], ..., (524288, 1048576] (as listed in openbench/metrics/mrcr.py).
- the token count: the card's example code, `enc = tiktoken.get_encoding("o200k_base")` and
  `n_tokens(messages) = sum(len(enc.encode(m["content"])) for m in messages)`, plus the answer's tokens
  for the bin. o200k_base is loaded offline from data/tiktoken/ (see load_o200k_base).
- the layout: `{2,4,8}needle/{n}needle_{0,1}.parquet` since the December 2025 bugfix revision (commit
  f4c69fae7cf81f7ca26b9fee34b392a50f6b8a1d, which added `date_added`); `{n}needle.parquet` at the root
  before it (commit 204b0d4e...). Both are read. Columns: prompt (JSON list of {role, content}),
  answer (random string + the needle's text), random_string_to_prepend, n_needles, desired_msg_index,
  total_messages, n_chars (and date_added).

Ours, not the card's: an item whose count falls outside the outer edges (under 4096 or over 1048576
tokens) is put in the nearest outer bin (the card places every item in a bin; openbench's scorer, too,
puts items matching no bin in the first), and `max_prompt_tokens` skips items that do not fit a
model's context, counting them (logged, and returned with the selection).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import lzma
import math
import os
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from harness.benchmarks.pins import DataError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
O200K_FILE = PROJECT_ROOT / "data" / "tiktoken" / "o200k_base.tiktoken.xz"
NEEDLES = (2, 4, 8)
BINS: tuple[tuple[int, int], ...] = ((4096, 8192), (8192, 16384), (16384, 32768), (32768, 65536),
                                     (65536, 131072), (131072, 262144), (262144, 524288), (524288, 1048576))
COLUMNS = ("prompt", "answer", "random_string_to_prepend", "n_needles", "desired_msg_index", "total_messages",
           "n_chars")
TOKENIZERS = ("o200k_base", "utf8_bytes_div_4")


def grade(response, answer, random_string_to_prepend) -> float:
    """
    Compare response and answer.
    """
    if not response.startswith(random_string_to_prepend):
        return 0
    response = response.removeprefix(random_string_to_prepend)
    answer = answer.removeprefix(random_string_to_prepend)
    return float(SequenceMatcher(None, response, answer).ratio())


def bin_of(total_tokens: int) -> tuple[int, int]:
    """The card's bin of an item by its prompt + answer tokens: [4096, 8192], then (lo, hi]; counts
    outside the outer edges go to the nearest outer bin (see the module docstring)."""
    for low, high in BINS:
        if total_tokens <= high:
            return low, high
    return BINS[-1]


def bin_name(bin_: tuple[int, int]) -> str:
    """The metric name of a bin: bin_<lo>_<hi> (MLflow names cannot hold brackets)."""
    return f"bin_{bin_[0]}_{bin_[1]}"


# ---------------------------------------------------------------------------------------------
# Token counting


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens of many texts at once; `max_token_bytes` bounds the bytes one token can cover, so
    ceil(bytes / max_token_bytes) <= tokens <= bytes holds for every text (byte-level BPE)."""

    name: str
    count_many: Callable[[list[str]], list[int]]
    max_token_bytes: int


@lru_cache(maxsize=1)
def load_o200k_base():
    """tiktoken's o200k_base Encoding, built offline by tiktoken's own constructor from the bundled ranks
    file, which must have the sha256 tiktoken itself pins for o200k_base (else it is refused). The file
    is OpenAI's o200k_base.tiktoken, rebuilt from the npm package tiktoken@1.0.22 (MIT, encoders/
    o200k_base.json: its bpe_ranks lines "<prefix> <first rank> <token> ..." written out one token per
    line) and xz-compressed. Without the file, tiktoken's cache or download is tried."""
    import tiktoken
    from tiktoken_ext import openai_public

    if not O200K_FILE.is_file():
        return tiktoken.get_encoding("o200k_base")
    raw = lzma.decompress(O200K_FILE.read_bytes())

    def bundled_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        digest = hashlib.sha256(raw).hexdigest()
        if expected_hash is not None and digest != expected_hash:
            raise DataError(f"{O200K_FILE} decompresses to sha256 {digest}, not the {expected_hash} tiktoken pins "
                            f"for {url}: the file is damaged; restore it from git")
        return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines() if line)}

    original = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = bundled_ranks
    try:
        spec = openai_public.o200k_base()
    finally:
        openai_public.load_tiktoken_bpe = original
    return tiktoken.Encoding(**spec)


def token_counter(name: str = "o200k_base") -> TokenCounter:
    """o200k_base (the card's), or `utf8_bytes_div_4`: an approximation (UTF-8 bytes / 4, rounded up) for a
    machine without the encoding, chosen only explicitly and recorded in every document (`n_tokens_by`)."""
    if name == "utf8_bytes_div_4":
        return TokenCounter(name, lambda texts: [math.ceil(len(t.encode()) / 4) for t in texts], 4)
    if name != "o200k_base":
        raise DataError(f"mrcr: tokenizer={name!r} is not known; use one of {list(TOKENIZERS)}")
    try:
        encoding = load_o200k_base()
    except DataError:
        raise
    except Exception as exc:  # no bundled file and no tiktoken cache or network
        raise DataError(f"mrcr: cannot load tiktoken's o200k_base ({type(exc).__name__}: {str(exc)[:200]}), the "
                        f"encoding the card bins by. Restore {O200K_FILE}, or count approximately with "
                        f"task.loader_kwargs.tokenizer=utf8_bytes_div_4 (bins and fits then differ from the "
                        f"card's near the edges)") from None
    threads = max(1, min(8, os.cpu_count() or 1))
    return TokenCounter(name, lambda texts: [len(t) for t in encoding.encode_ordinary_batch(texts, num_threads=threads)],
                        max(len(token) for token in encoding.token_byte_values()))


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class Selection:
    """The items chosen, and what was left out and why."""

    items: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0             # rows read, over every file of the needle counts asked for
    other_bins: int = 0       # in a bin that was not asked for
    too_long: int = 0         # prompt over max_prompt_tokens
    outside_edges: int = 0    # chosen items counted under 4096 or over 1048576 tokens (put in the outer bin)

    def describe(self) -> str:
        per_bin = [f"{bin_name(b)}: {n}" for b in BINS if (n := sum(item["bin"] == bin_name(b) for item in self.items))]
        return (f"{len(self.items)} items of {self.rows} ({', '.join(per_bin) or 'none'}); skipped {self.too_long} "
                f"whose prompt is over max_prompt_tokens, {self.other_bins} in other bins"
                + (f"; {self.outside_edges} counted outside the outer bin edges" if self.outside_edges else ""))


def needle_files(data_dir: str | Path, needles: int) -> list[Path]:
    """The parquet files of one needle count: `{n}needle/*.parquet` (current layout), else `{n}needle.parquet`."""
    folder = Path(data_dir) / f"{needles}needle"
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files and (Path(data_dir) / f"{needles}needle.parquet").is_file():
        files = [Path(data_dir) / f"{needles}needle.parquet"]
    return files


def _as_list(value: Any, name: str, allowed: Iterable[int]) -> list[int]:
    values = [value] if isinstance(value, (int, str)) else list(value or [])
    try:
        values = [int(v) for v in values]
    except (TypeError, ValueError):
        raise DataError(f"mrcr: {name}={value!r} must be a number or a list of numbers") from None
    allowed = list(allowed)
    wrong = [v for v in values if v not in allowed]
    if wrong or not values:
        raise DataError(f"mrcr: {name}={value!r} is not among {allowed}")
    return values


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of one parquet file, a few at a time (1M-token rows are ~5 MB of text each)."""
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(path)
    missing = [c for c in COLUMNS[:4] if c not in reader.schema_arrow.names]
    if missing:
        raise DataError(f"{path} is not an MRCR file: no column(s) {missing} (it has {reader.schema_arrow.names})")
    for batch in reader.iter_batches(batch_size=8):
        yield from batch.to_pylist()


def conversation(prompt: str, where: str) -> list[dict[str, str]]:
    """The chat messages of a `prompt` cell, checked: a non-empty list of {role, content} strings."""
    try:
        messages = json.loads(prompt)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: `prompt` is not JSON ({exc})") from None
    if not (isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages)):
        raise DataError(f"{where}: `prompt` is not a list of {{role, content}} messages")
    return messages


def load_items(data_dir: str | Path, needles: int | list[int] = 8, bins: int | list[int] | None = None,
               max_prompt_tokens: int | None = None, tokenizer: str = "o200k_base") -> Selection:
    """Items of the needle counts asked for, in the bins asked for (by upper edge; None: all), whose
    prompt fits max_prompt_tokens (None: no limit), in file and row order. Rows that bytes alone place
    outside the bins or over the limit are never tokenized (tokens lie between bytes/max_token_bytes
    and bytes), so the selection is the one exact counting of every row would give."""
    needle_counts = _as_list(needles, "needles", NEEDLES)
    wanted = {b for b in BINS if b[1] in _as_list(bins, "bins", [hi for _, hi in BINS])} if bins is not None else set(BINS)
    if max_prompt_tokens is not None:
        max_prompt_tokens = int(max_prompt_tokens)
        if max_prompt_tokens <= 0:
            raise DataError(f"mrcr: max_prompt_tokens={max_prompt_tokens} must be positive (or null: no limit)")
    counter = token_counter(tokenizer)
    selection = Selection()
    for n in needle_counts:
        files = needle_files(data_dir, n)
        if not files:
            raise DataError(f"mrcr: no {n}-needle files in {data_dir} (expected {n}needle/{n}needle_*.parquet "
                            f"as on the hub); fetch them with `python -m harness.data pull task=mrcr "
                            f"--include '{n}needle/*' --include README.md`")
        for path in files:
            for index, row in enumerate(_rows(path)):
                selection.rows += 1
                where = f"{path.relative_to(data_dir) if path.is_relative_to(data_dir) else path}#{index}"
                item = _select(row, where, n, wanted, max_prompt_tokens, counter, selection)
                if item is not None:
                    selection.items.append(item)
    log.info("mrcr: %s", selection.describe())
    if selection.too_long:
        log.warning("mrcr: %d items skipped: their prompt is over max_prompt_tokens=%s (%s tokens)",
                    selection.too_long, max_prompt_tokens, counter.name)
    return selection


def _select(row: dict[str, Any], where: str, needles: int, wanted: set[tuple[int, int]], max_prompt_tokens: int | None,
            counter: TokenCounter, selection: Selection) -> dict[str, Any] | None:
    """The document for one row, or None (counted in `selection`) if it is left out."""
    if int(row["n_needles"]) != needles:
        raise DataError(f"{where}: n_needles={row['n_needles']} in the {needles}-needle files")
    answer, prefix = row["answer"], row["random_string_to_prepend"]
    if not isinstance(answer, str) or not isinstance(prefix, str):
        raise DataError(f"{where}: `answer` and `random_string_to_prepend` must be strings")
    messages = conversation(row["prompt"], where)
    contents = [m["content"] for m in messages]
    prompt_bytes = sum(len(c.encode()) for c in contents)
    total_bytes = prompt_bytes + len(answer.encode())
    widest = counter.max_token_bytes
    if max_prompt_tokens is not None and math.ceil(prompt_bytes / widest) > max_prompt_tokens:
        selection.too_long += 1
        return None
    possible = {bin_of(n) for n in (math.ceil(total_bytes / widest), total_bytes)}
    lowest, highest = min(possible), max(possible)
    if not any(lowest <= b <= highest for b in wanted):
        selection.other_bins += 1
        return None
    counts = counter.count_many(contents + [answer])
    prompt_tokens, total_tokens = sum(counts[:-1]), sum(counts)
    if max_prompt_tokens is not None and prompt_tokens > max_prompt_tokens:
        selection.too_long += 1
        return None
    bin_ = bin_of(total_tokens)
    if bin_ not in wanted:
        selection.other_bins += 1
        return None
    selection.outside_edges += not BINS[0][0] <= total_tokens <= BINS[-1][1]
    doc = {k: row[k] for k in row if k in COLUMNS or k == "date_added"}
    doc["date_added"] = str(doc["date_added"]) if doc.get("date_added") is not None else None
    return {**doc, "n_tokens": prompt_tokens, "n_tokens_total": total_tokens, "n_tokens_by": counter.name,
            "bin": bin_name(bin_), "source": where}


def lm_eval_dataset(data_dir: str, needles: int | list[int] = 8, bins: int | list[int] | None = None,
                    max_prompt_tokens: int | None = None, tokenizer: str = "o200k_base", **ignored: Any):
    """lm-eval `custom_dataset`: {"test": Dataset of the selected items}. lm-eval passes the task's
    metadata and dataset_kwargs as keyword arguments, so unrelated keys (version, cache_dir, ...) are
    ignored. An empty selection is an error naming what was skipped (an evaluation of nothing is a
    configuration mistake)."""
    import datasets

    selection = load_items(data_dir, needles, bins, max_prompt_tokens, tokenizer)
    if not selection.items:
        raise DataError(f"mrcr: nothing to evaluate in {data_dir} with needles={needles}, bins={bins}, "
                        f"max_prompt_tokens={max_prompt_tokens}: {selection.describe()}")
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(selection.items)})
