"""LiveCodeBench (code generation, "lite") problems read straight from the dataset's JSONL files.

The hub dataset `livecodebench/code_generation_lite` ships one JSONL file per release increment
(`test.jsonl`, `test2.jsonl` ... `test6.jsonl`) and a loading script, `code_generation_lite.py`,
that picks the files of a release. `datasets` >= 4 no longer runs loading scripts, so this module
reproduces the script's selection and reads the files itself from a local folder (the harness
mirror or a huggingface_hub snapshot of the dataset; `python -m harness.data pull task=<task>`).

Release names (`ALLOWED_FILES`, built as in `code_generation_lite.py` of the hub dataset
livecodebench/code_generation_lite; read from the verbatim copy in the GitHub repository
icip-cas/AutoAlign, src/autoalign/eval/livecodebench/livecodebench/code_generation_lite/
code_generation_lite.py):

* `release_v1` ... `release_v6`: the cumulative releases, `test.jsonl` up to `test<N>.jsonl`;
  `release_latest`: all six files;
* `v1` ... `v6`: one increment each (`v1` is `test.jsonl`, `vN` is `testN.jsonl`);
* `vI_vJ` for 1 <= I < J <= 6: the increments I..J inclusive (`v4_v5` = test4 + test5).

Any other name raises ValueError listing these.

Record schema (every field is a string in the JSONL; see the script's `_info` features and
`CodeGenerationProblem` in LiveCodeBench/LiveCodeBench, lcb_runner/benchmarks/code_generation.py):
question_title, question_content, platform (leetcode | atcoder | codeforces), question_id,
contest_id, contest_date (ISO datetime, e.g. "2023-08-21T00:00:00"), starter_code (a
`class Solution:` stub for LeetCode's functional problems, "" for stdin problems), difficulty
(easy | medium | hard), public_test_cases (JSON list of {input, output, testtype}),
private_test_cases (the same JSON, or base64(zlib(pickle(<that JSON string>)))), metadata (JSON
object; `func_name` names the method of functional problems).

Security: the private tests are decoded by harness.benchmarks.livecodebench.private_tests (a pickle
reader that resolves no global, plain values only, an inflation cap).

Cost: the real files are several GB, mostly private tests. Files are streamed line by line; the
cheap fields (platform, difficulty, contest_date) decide whether a problem is kept, and only kept
problems have their tests decoded. With `sample_size`, a first pass records where the kept problems
are, the sample is drawn, and a second pass reads only the sampled lines.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import operator
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.benchmarks.livecodebench.private_tests import (  # noqa: F401 (re-exported)
    MAX_DECOMPRESSED_BYTES, TEST_TYPES, _json_loads, _tests, decode_private_tests)
from harness.benchmarks.livecodebench.problems import (  # noqa: F401 (re-exported)
    DOC_COLUMNS, LiveCodeBenchDataError, Problem, TestCase, UntrustedDataError, to_doc)

log = logging.getLogger(__name__)

DATASET_REPO = "livecodebench/code_generation_lite"

# --- release -> files, as built by code_generation_lite.py ------------------------------------

_FILES = ["test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl"]


def _file_of(increment: int) -> str:
    return "test.jsonl" if increment == 1 else f"test{increment}.jsonl"


def _build_allowed_files() -> dict[str, tuple[str, ...]]:
    allowed: dict[str, tuple[str, ...]] = {}
    for n in range(1, len(_FILES) + 1):
        allowed[f"release_v{n}"] = tuple(_FILES[:n])
    allowed["release_latest"] = tuple(_FILES)
    for n in range(1, len(_FILES) + 1):
        allowed[f"v{n}"] = (_file_of(n),)
    for first in range(1, len(_FILES) + 1):
        for last in range(first + 1, len(_FILES) + 1):
            allowed[f"v{first}_v{last}"] = tuple(_file_of(i) for i in range(first, last + 1))
    return allowed


# Name -> files, in the script's insertion order (release_v1..v6, release_latest, v1..v6, ranges).
ALLOWED_FILES: dict[str, tuple[str, ...]] = _build_allowed_files()
RELEASES: tuple[str, ...] = tuple(ALLOWED_FILES)

PLATFORMS = ("leetcode", "atcoder", "codeforces")
DIFFICULTIES = ("easy", "medium", "hard")
FIELDS = (
    "question_title", "question_content", "platform", "question_id", "contest_id",
    "contest_date", "starter_code", "difficulty", "public_test_cases", "private_test_cases",
    "metadata",
)


PULL_HINT = "python -m harness.data pull task={task}"


# --- release selection ----------------------------------------------------------------------

def release_files(release: str) -> tuple[str, ...]:
    """The JSONL files making up `release`, as `code_generation_lite.py` selects them."""
    try:
        return ALLOWED_FILES[release]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown LiveCodeBench release {release!r}; valid names: {', '.join(RELEASES)}"
        ) from None


def _release_paths(data_dir: str | Path, release: str, task: str | None) -> list[Path]:
    files = release_files(release)
    root = Path(data_dir).expanduser()
    hint = PULL_HINT.format(task=task or "<task>")
    if not root.is_dir():
        raise FileNotFoundError(
            f"LiveCodeBench data folder {root} does not exist (release {release!r} needs "
            f"{', '.join(files)} from {DATASET_REPO}); get the files with: {hint}"
        )
    paths = [root / name for name in files]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: LiveCodeBench release {release!r} needs {path.name} "
                f"(files: {', '.join(files)}) from {DATASET_REPO}; get them with: {hint}"
            )
    return paths


# --- filters --------------------------------------------------------------------------------

def _as_date(value: Any, name: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            try:
                return dt.datetime.fromisoformat(value.strip()).date()
            except ValueError:
                pass
    raise ValueError(f"{name}={value!r} is not an ISO date (YYYY-MM-DD)")


def _choices(value: Any, name: str, valid: tuple[str, ...]) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items = [value]
    else:
        try:
            items = list(value)
        except TypeError:
            raise ValueError(f"{name}={value!r} is not a name or a list of names") from None
    chosen = set()
    for item in items:
        if not isinstance(item, str) or item.strip().lower() not in valid:
            raise ValueError(f"{name}: {item!r} is not one of {', '.join(valid)}")
        chosen.add(item.strip().lower())
    if not chosen:
        raise ValueError(f"{name} is empty; leave it unset to keep all of {', '.join(valid)}")
    return frozenset(chosen)


@dataclass(frozen=True)
class _Filters:
    start: dt.date | None
    end: dt.date | None
    difficulty: frozenset[str] | None
    platform: frozenset[str] | None

    def keep(self, contest_date: dt.datetime, difficulty: str, platform: str) -> bool:
        day = contest_date.date()
        return ((self.start is None or self.start <= day)
                and (self.end is None or day <= self.end)
                and (self.difficulty is None or difficulty in self.difficulty)
                and (self.platform is None or platform in self.platform))


# --- streaming ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Head:
    """The cheap fields of one record and where it is."""

    path: Path
    line_no: int
    offset: int
    question_id: str
    contest_date: dt.datetime
    difficulty: str
    platform: str


def _parse_line(line: bytes, path: Path, line_no: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise LiveCodeBenchDataError(f"{path}:{line_no}: not a JSON line ({exc})") from None
    if not isinstance(record, dict):
        raise LiveCodeBenchDataError(f"{path}:{line_no}: not a JSON object")
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise LiveCodeBenchDataError(f"{path}:{line_no}: missing field(s) {', '.join(missing)}")
    for name in FIELDS:
        if not isinstance(record[name], str):
            raise LiveCodeBenchDataError(
                f"{path}:{line_no}: field {name} is a {type(record[name]).__name__}, "
                f"expected a string"
            )
    return record


def _head(record: dict[str, Any], path: Path, line_no: int, offset: int) -> _Head:
    qid = record["question_id"]
    where = f"{path}:{line_no} (problem {qid!r})"
    try:
        contest_date = dt.datetime.fromisoformat(record["contest_date"])
    except ValueError:
        raise LiveCodeBenchDataError(
            f"{where}: contest_date {record['contest_date']!r} is not an ISO datetime"
        ) from None
    if record["platform"] not in PLATFORMS:
        raise LiveCodeBenchDataError(f"{where}: unknown platform {record['platform']!r}")
    if record["difficulty"] not in DIFFICULTIES:
        raise LiveCodeBenchDataError(f"{where}: unknown difficulty {record['difficulty']!r}")
    return _Head(path, line_no, offset, qid, contest_date, record["difficulty"],
                 record["platform"])


def _scan(paths: Iterable[Path]) -> Iterator[tuple[_Head, dict[str, Any]]]:
    """Every record of the files, in order, with its cheap fields checked."""
    for path in paths:
        offset = 0
        with path.open("rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                record = _parse_line(line, path, line_no)
                yield _head(record, path, line_no, start), record


def _read_at(head: _Head) -> dict[str, Any]:
    with head.path.open("rb") as handle:
        handle.seek(head.offset)
        return _parse_line(handle.readline(), head.path, head.line_no)


def _problem(head: _Head, record: dict[str, Any], max_decompressed_bytes: int) -> Problem:
    qid = head.question_id
    public = _tests(_json_loads(record["public_test_cases"], "public_test_cases", qid),
                    "public_test_cases", qid)
    private = decode_private_tests(record["private_test_cases"], qid,
                                   max_decompressed_bytes=max_decompressed_bytes)
    metadata = _json_loads(record["metadata"], "metadata", qid)
    if not isinstance(metadata, dict):
        raise LiveCodeBenchDataError(f"LiveCodeBench problem {qid!r}: metadata is not an object")
    func_name = metadata.get("func_name")
    if func_name is not None and not isinstance(func_name, str):
        raise LiveCodeBenchDataError(
            f"LiveCodeBench problem {qid!r}: metadata func_name is not a string")
    return Problem(
        question_title=record["question_title"],
        question_content=record["question_content"],
        platform=head.platform,
        question_id=qid,
        contest_id=record["contest_id"],
        contest_date=head.contest_date,
        starter_code=record["starter_code"],
        difficulty=head.difficulty,
        public_test_cases=tuple(public),
        private_test_cases=tuple(private),
        metadata=metadata,
        func_name=func_name or None,
    )


# --- entry points ---------------------------------------------------------------------------

def load_problems(
    data_dir: str | Path,
    release: str = "release_latest",
    *,
    start_date: str | dt.date | None = None,
    end_date: str | dt.date | None = None,
    difficulty: str | Iterable[str] | None = None,
    platform: str | Iterable[str] | None = None,
    sample_size: int | None = None,
    seed: int = 1234,
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
    task: str | None = None,
) -> list[Problem]:
    """The problems of `release` read from `data_dir` (a folder holding the release's JSONL files),
    filtered, optionally sampled, with their tests decoded.

    Filters (all optional): `start_date` / `end_date` are inclusive ISO dates compared with the
    contest day (contamination control; LiveCodeBench's runner uses the same `start <= date <=
    end`); `difficulty` and `platform` are a name or a list of names. Then, with `sample_size`,
    `random.Random(seed).sample` picks that many of the kept problems ordered by
    (question_id, file, line), so the same seed picks the same problems on any machine; a
    sample_size at least the number kept keeps them all. Problems come back in file order.

    Raises ValueError for an unknown release or filter value, FileNotFoundError (naming the file,
    the release and the pull command; `task` fills in its task name) for a missing file,
    LiveCodeBenchDataError for a malformed record and UntrustedDataError for private tests that
    are not plain data or inflate past `max_decompressed_bytes`."""
    paths = _release_paths(data_dir, release, task)
    filters = _Filters(
        start=_as_date(start_date, "start_date"),
        end=_as_date(end_date, "end_date"),
        difficulty=_choices(difficulty, "difficulty", DIFFICULTIES),
        platform=_choices(platform, "platform", PLATFORMS),
    )
    if filters.start and filters.end and filters.start > filters.end:
        raise ValueError(f"start_date {filters.start} is after end_date {filters.end}")
    if sample_size is not None:
        try:
            if isinstance(sample_size, bool) or operator.index(sample_size) <= 0:
                raise TypeError
        except TypeError:
            raise ValueError(f"sample_size={sample_size!r} is not a positive integer") from None
        sample_size = operator.index(sample_size)

    if sample_size is None:
        problems = [_problem(head, record, max_decompressed_bytes)
                    for head, record in _scan(paths)
                    if filters.keep(head.contest_date, head.difficulty, head.platform)]
    else:
        kept = [head for head, _ in _scan(paths)
                if filters.keep(head.contest_date, head.difficulty, head.platform)]
        order = {path: i for i, path in enumerate(paths)}
        if sample_size < len(kept):
            population = sorted(kept, key=lambda h: (h.question_id, order[h.path], h.line_no))
            chosen = random.Random(seed).sample(population, sample_size)
        else:
            if sample_size > len(kept):
                log.warning("LiveCodeBench: sample_size=%d but only %d problems match; using "
                            "all of them", sample_size, len(kept))
            chosen = kept
        chosen = sorted(chosen, key=lambda h: (order[h.path], h.line_no))
        problems = [_problem(head, _read_at(head), max_decompressed_bytes) for head in chosen]
    log.info("LiveCodeBench %s from %s: %d problems", release, data_dir, len(problems))
    return problems


def doc_features():
    """`datasets.Features` of the docs: every column a string (func_name may be null)."""
    import datasets

    return datasets.Features({name: datasets.Value("string") for name in DOC_COLUMNS})


def lm_eval_dataset(
    data_dir: str,
    release: str = "release_latest",
    start_date: str | None = None,
    end_date: str | None = None,
    difficulty: str | list[str] | None = None,
    platform: str | list[str] | None = None,
    sample_size: int | None = None,
    seed: int = 1234,
    task: str | None = None,
    **ignored: Any,
):
    """lm-eval `custom_dataset`: {"test": Dataset of `to_doc` rows}. lm-eval calls it with the
    task's metadata and dataset_kwargs as keyword arguments, so unrelated keys (cache_dir,
    revision, version, ...) are accepted and ignored. An empty selection is an error (an
    evaluation of nothing is a configuration mistake)."""
    import datasets

    if ignored:
        log.debug("LiveCodeBench lm_eval_dataset ignores %s", ", ".join(sorted(ignored)))
    problems = load_problems(
        data_dir, release, start_date=start_date, end_date=end_date, difficulty=difficulty,
        platform=platform, sample_size=sample_size, seed=seed, task=task,
    )
    if not problems:
        raise ValueError(
            f"no LiveCodeBench problems in {data_dir} match release={release!r}, "
            f"start_date={start_date!r}, end_date={end_date!r}, difficulty={difficulty!r}, "
            f"platform={platform!r}"
        )
    rows = [to_doc(p) for p in problems]
    test = datasets.Dataset.from_list(rows, features=doc_features())
    return datasets.DatasetDict({"test": test})
