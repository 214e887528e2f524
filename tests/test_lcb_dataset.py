"""LiveCodeBench data loading (harness.benchmarks.livecodebench.dataset) on the fixtures of
tests/fixtures/livecodebench (8 problems in the dataset's schema over test.jsonl = 2023 contests,
test2.jsonl = 2024, test3.jsonl = 2025; malicious/test.jsonl holds tampered pickles)."""

from __future__ import annotations

import ast
import base64
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from harness.benchmarks.livecodebench import dataset as lcb
from harness.benchmarks.livecodebench.dataset import (
    ALLOWED_FILES,
    DOC_COLUMNS,
    MAX_DECOMPRESSED_BYTES,
    LiveCodeBenchDataError,
    Problem,
    TestCase,
    UntrustedDataError,
    decode_private_tests,
    lm_eval_dataset,
    load_problems,
    release_files,
    to_doc,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "livecodebench"
MALICIOUS = FIXTURES / "malicious"
MARKER_ENV = "LCB_PWNED_MARKER"

V1 = ["9001", "abc900_a", "1900_A"]          # test.jsonl, 2023
V2 = ["9002", "abc901_b", "1950_C"]          # test2.jsonl, 2024
V3 = ["9003", "abc902_c"]                    # test3.jsonl, 2025
ALL = V1 + V2 + V3
PACKED = ["abc900_a", "1900_A", "9002", "9003"]  # private tests stored as base64+zlib+pickle


def ids(problems):
    return [p.question_id for p in problems]


def pack(value) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(value, protocol=4))).decode()


def _load_make_fixtures():
    spec = importlib.util.spec_from_file_location("lcb_make_fixtures",
                                                  FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy_release_files(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("test.jsonl", "test2.jsonl", "test3.jsonl"):
        shutil.copy(FIXTURES / name, dest / name)
    return dest


# --- release mapping ------------------------------------------------------------------------

def test_release_names_are_those_of_the_loading_script():
    expected = (
        [f"release_v{n}" for n in range(1, 7)] + ["release_latest"]
        + [f"v{n}" for n in range(1, 7)]
        + [f"v{i}_v{j}" for i in range(1, 7) for j in range(i + 1, 7)]
    )
    assert list(ALLOWED_FILES) == expected
    assert len(ALLOWED_FILES) == 7 + 6 + 15


@pytest.mark.parametrize("release, files", [
    ("release_v1", ("test.jsonl",)),
    ("release_v2", ("test.jsonl", "test2.jsonl")),
    ("release_v5", ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl")),
    ("release_v6", ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl",
                    "test6.jsonl")),
    ("release_latest", ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl",
                        "test5.jsonl", "test6.jsonl")),
    ("v1", ("test.jsonl",)),
    ("v2", ("test2.jsonl",)),
    ("v6", ("test6.jsonl",)),
    ("v1_v2", ("test.jsonl", "test2.jsonl")),
    ("v4_v5", ("test4.jsonl", "test5.jsonl")),
    ("v2_v6", ("test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")),
])
def test_release_files(release, files):
    assert release_files(release) == files


@pytest.mark.parametrize("release, expected", [
    ("release_v1", V1),
    ("release_v2", V1 + V2),
    ("release_v3", ALL),
    ("v1", V1),
    ("v2", V2),
    ("v3", V3),
    ("v1_v2", V1 + V2),
    ("v2_v3", V2 + V3),
    ("v1_v3", ALL),
])
def test_release_selects_its_files_in_order(release, expected):
    assert ids(load_problems(FIXTURES, release)) == expected


def test_release_latest_reads_all_six_files(tmp_path):
    data = _copy_release_files(tmp_path / "lcb")
    for name in ("test4.jsonl", "test5.jsonl", "test6.jsonl"):
        (data / name).write_text("")
    assert ids(load_problems(data)) == ALL  # default release: release_latest
    assert ids(load_problems(data, "v4_v6")) == []
    assert ids(load_problems(str(data), "v3_v4")) == V3


@pytest.mark.parametrize("bad", ["release_v7", "v0", "v5_v4", "v1_v1", "latest", "V1", ""])
def test_unknown_release_lists_valid_names(bad):
    with pytest.raises(ValueError) as err:
        load_problems(FIXTURES, bad)
    message = str(err.value)
    assert repr(bad) in message
    for name in ("release_v1", "release_latest", "v6", "v4_v5", "v1_v6"):
        assert name in message


def test_missing_file_names_file_release_and_pull_command():
    with pytest.raises(FileNotFoundError) as err:
        load_problems(FIXTURES, "release_v4")
    message = str(err.value)
    assert str(FIXTURES / "test4.jsonl") in message
    assert "'release_v4'" in message
    assert "python -m harness.data pull task=<task>" in message

    with pytest.raises(FileNotFoundError) as err:
        load_problems(FIXTURES, "v5", task="livecodebench_v5")
    assert "test5.jsonl" in str(err.value)
    assert "python -m harness.data pull task=livecodebench_v5" in str(err.value)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_problems(tmp_path / "nowhere", "release_v1")
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "does not exist" in str(err.value)


def test_missing_file_fails_before_reading_anything(tmp_path, monkeypatch):
    data = _copy_release_files(tmp_path / "lcb")
    (data / "test2.jsonl").unlink()
    scanned = []
    monkeypatch.setattr(lcb, "_parse_line", lambda *a: scanned.append(a) or {})
    with pytest.raises(FileNotFoundError, match="test2.jsonl"):
        load_problems(data, "release_v3")
    assert scanned == []


# --- records --------------------------------------------------------------------------------

def test_problem_fields_are_decoded():
    problems = {p.question_id: p for p in load_problems(FIXTURES, "release_v3")}
    two_sum = problems["9001"]
    assert two_sum.question_title == "two-sum"
    assert two_sum.platform == "leetcode"
    assert two_sum.contest_id == "weekly-contest-350"
    assert two_sum.contest_date == dt.datetime(2023, 6, 18)
    assert two_sum.difficulty == "easy"
    assert two_sum.starter_code.startswith("class Solution:\n    def twoSum(self, nums")
    assert two_sum.func_name == "twoSum"
    assert two_sum.metadata == {"func_name": "twoSum"}
    assert two_sum.public_test_cases == (TestCase("[2,7,11,15]\n9", "[0, 1]", "functional"),)
    assert two_sum.private_test_cases == (
        TestCase("[3,2,4]\n6", "[1, 2]", "functional"),
        TestCase("[3,3]\n6", "[0, 1]", "functional"),
        TestCase("[1,5,9,-2]\n7", "[2, 3]", "functional"),
    )

    run = problems["1950_C"]
    assert (run.platform, run.difficulty, run.func_name, run.starter_code) == (
        "codeforces", "hard", None, "")
    assert run.metadata == {}
    assert run.public_test_cases == (TestCase("6\n1 2 2 3 4 1\n", "3\n3\n", "stdin"),)
    assert len(run.private_test_cases) == 4

    with pytest.raises(dataclasses.FrozenInstanceError):
        two_sum.difficulty = "hard"
    assert len({hash(p) for p in problems.values()}) == 8  # hashable (metadata not hashed)


def test_to_doc_is_plain_json_with_the_tests():
    problems = {p.question_id: p for p in load_problems(FIXTURES, "release_v3")}
    doc = to_doc(problems["9001"])
    assert list(doc) == list(DOC_COLUMNS)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["question_id"] == "9001"
    assert doc["contest_date"] == "2023-06-18T00:00:00"
    assert doc["func_name"] == "twoSum"
    assert doc["platform"] == "leetcode" and doc["difficulty"] == "easy"
    assert json.loads(doc["public_tests"]) == [
        {"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": "functional"}]
    assert json.loads(doc["private_tests"])[0] == {
        "input": "[3,2,4]\n6", "output": "[1, 2]", "testtype": "functional"}
    assert json.loads(doc["metadata"]) == {"func_name": "twoSum"}

    stdin_doc = to_doc(problems["abc900_a"])
    assert stdin_doc["func_name"] is None
    assert stdin_doc["starter_code"] == ""
    assert json.loads(stdin_doc["private_tests"]) == [
        {"input": "1\n-5\n", "output": "-5\n", "testtype": "stdin"},
        {"input": "5\n10 20 30 40 50\n", "output": "150\n", "testtype": "stdin"},
        {"input": "4\n-1 1 -1 1\n", "output": "0\n", "testtype": "stdin"},
    ]
    for problem in problems.values():
        doc = to_doc(problem)
        assert (doc["func_name"] is None) == (problem.platform != "leetcode")
        assert all(isinstance(v, str) for k, v in doc.items() if k != "func_name")


# --- filters --------------------------------------------------------------------------------

@pytest.mark.parametrize("start, end, expected", [
    ("2024-01-01", "2024-12-31", V2),
    ("2024-02-10", "2024-08-15", V2),             # both ends inclusive
    ("2024-02-11", "2024-08-14", ["abc901_b"]),
    (None, "2023-09-02", ["9001", "abc900_a"]),
    ("2025-01-12", None, V3),
    (dt.date(2023, 11, 20), dt.datetime(2024, 2, 10, 23, 59), ["1900_A", "9002"]),
    ("2026-01-01", None, []),
])
def test_contest_date_window(start, end, expected):
    got = load_problems(FIXTURES, "release_v3", start_date=start, end_date=end)
    assert ids(got) == expected


@pytest.mark.parametrize("kwargs, message", [
    ({"start_date": "2024-13-01"}, "start_date='2024-13-01' is not an ISO date"),
    ({"end_date": "last year"}, "end_date='last year' is not an ISO date"),
    ({"start_date": "2025-01-01", "end_date": "2024-01-01"}, "is after end_date"),
    ({"difficulty": ["expert"]}, "'expert' is not one of easy, medium, hard"),
    ({"difficulty": []}, "difficulty is empty"),
    ({"platform": "topcoder"}, "'topcoder' is not one of leetcode, atcoder, codeforces"),
    ({"sample_size": 0}, "sample_size=0 is not a positive integer"),
    ({"sample_size": True}, "sample_size=True is not a positive integer"),
    ({"sample_size": "3"}, "sample_size='3' is not a positive integer"),
    ({"difficulty": 3}, "difficulty=3 is not a name or a list of names"),
])
def test_bad_filter_values(kwargs, message):
    with pytest.raises(ValueError) as err:
        load_problems(FIXTURES, "release_v3", **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("difficulty, expected", [
    (["hard"], ["1950_C", "9003"]),
    ("easy", ["9001", "abc900_a", "abc902_c"]),
    (["easy", "medium"], ["9001", "abc900_a", "1900_A", "9002", "abc901_b", "abc902_c"]),
    (("Medium",), ["1900_A", "9002", "abc901_b"]),
])
def test_difficulty_filter(difficulty, expected):
    assert ids(load_problems(FIXTURES, "release_v3", difficulty=difficulty)) == expected


@pytest.mark.parametrize("platform, expected", [
    (["leetcode"], ["9001", "9002", "9003"]),
    ("atcoder", ["abc900_a", "abc901_b", "abc902_c"]),
    (["atcoder", "codeforces"], ["abc900_a", "1900_A", "abc901_b", "1950_C", "abc902_c"]),
])
def test_platform_filter(platform, expected):
    assert ids(load_problems(FIXTURES, "release_v3", platform=platform)) == expected


def test_filters_accept_hydra_lists():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"difficulty": ["hard"], "platform": ["leetcode", "codeforces"]})
    got = load_problems(FIXTURES, "release_v3", difficulty=cfg.difficulty, platform=cfg.platform)
    assert ids(got) == ["1950_C", "9003"]


def test_filters_combine():
    got = load_problems(FIXTURES, "v1_v3", platform=["leetcode"], start_date="2024-01-01",
                        difficulty=["hard", "medium"])
    assert ids(got) == ["9002", "9003"]


# --- seeded sample --------------------------------------------------------------------------

def test_sample_is_fixed_by_the_seed():
    first = ids(load_problems(FIXTURES, "release_v3", sample_size=3, seed=7))
    again = ids(load_problems(FIXTURES, "release_v3", sample_size=3, seed=7))
    assert first == again
    assert len(first) == len(set(first)) == 3
    assert set(first) <= set(ALL)
    # The documented algorithm: Random(seed).sample over the kept problems ordered by
    # question_id, returned in file order.
    expected = set(random.Random(7).sample(sorted(ALL), 3))
    assert first == [qid for qid in ALL if qid in expected]
    # Pinned: the same seed picks the same problems on any machine.
    assert ids(load_problems(FIXTURES, "release_v3", sample_size=3)) == [
        qid for qid in ALL if qid in set(random.Random(1234).sample(sorted(ALL), 3))]


def test_different_seeds_pick_different_problems():
    picks = {seed: tuple(ids(load_problems(FIXTURES, "release_v3", sample_size=3, seed=seed)))
             for seed in (1, 2, 3, 4)}
    assert len(set(picks.values())) > 1
    assert picks[1] != picks[2]


def test_sample_draws_from_the_filtered_problems():
    got = ids(load_problems(FIXTURES, "release_v3", platform="leetcode", sample_size=2, seed=5))
    expected = set(random.Random(5).sample(["9001", "9002", "9003"], 2))
    assert got == [qid for qid in ["9001", "9002", "9003"] if qid in expected]


def test_sample_larger_than_selection_keeps_all():
    assert ids(load_problems(FIXTURES, "release_v3", sample_size=8)) == ALL
    assert ids(load_problems(FIXTURES, "release_v3", difficulty="hard", sample_size=50)) == [
        "1950_C", "9003"]


def test_sampled_problems_equal_unsampled_ones():
    full = {p.question_id: p for p in load_problems(FIXTURES, "release_v3")}
    for p in load_problems(FIXTURES, "release_v3", sample_size=4, seed=11):
        assert p == full[p.question_id]


def test_only_kept_problems_have_their_tests_decoded(monkeypatch):
    decoded = []
    real = lcb.decode_private_tests

    def spy(raw, question_id="?", **kwargs):
        decoded.append(question_id)
        return real(raw, question_id, **kwargs)

    monkeypatch.setattr(lcb, "decode_private_tests", spy)
    got = ids(load_problems(FIXTURES, "release_v3", sample_size=2, seed=3))
    assert decoded == got and len(got) == 2
    decoded.clear()
    got = ids(load_problems(FIXTURES, "release_v3", platform="codeforces"))
    assert decoded == got == ["1900_A", "1950_C"]


# --- private test encodings -----------------------------------------------------------------

def test_pickled_private_tests_decode_like_their_json(tmp_path):
    packed = load_problems(FIXTURES, "release_v3")
    data = _copy_release_files(tmp_path / "json_only")
    rewritten = 0
    for name in ("test.jsonl", "test2.jsonl", "test3.jsonl"):
        lines = []
        for line in (data / name).read_text().splitlines():
            record = json.loads(line)
            raw = record["private_test_cases"]
            if not raw.startswith("["):
                record["private_test_cases"] = pickle.loads(  # our own fixture blobs
                    zlib.decompress(base64.b64decode(raw)))
                rewritten += 1
            lines.append(json.dumps(record))
        (data / name).write_text("\n".join(lines) + "\n")
    assert rewritten == len(PACKED)
    as_json = load_problems(data, "release_v3")
    assert as_json == packed
    assert all(p.private_test_cases for p in packed)


def test_decode_private_tests_both_forms():
    tests = [{"input": "1\n-5\n", "output": "-5\n", "testtype": "stdin"},
             {"input": "[1]", "output": "1", "testtype": "functional"}]
    expected = [TestCase("1\n-5\n", "-5\n", "stdin"), TestCase("[1]", "1", "functional")]
    assert decode_private_tests(json.dumps(tests), "q") == expected
    assert decode_private_tests(pack(json.dumps(tests)), "q") == expected
    assert decode_private_tests(pack(tests), "q") == expected  # a pickled list is plain data too
    assert decode_private_tests("[]", "q") == []


@pytest.mark.parametrize("value, what", [
    (b"bytes", "bytes"),
    ({1, 2}, "set"),
    (("input", "output"), "tuple"),
    ([{"input": "1", "output": 1j, "testtype": "stdin"}], "complex"),
    ({1: "int key"}, "dict key of type int"),
])
def test_pickle_of_non_plain_values_is_refused(value, what):
    with pytest.raises(UntrustedDataError) as err:
        decode_private_tests(pack(value), "q42")
    assert "'q42'" in str(err.value)
    assert what in str(err.value)


def test_cyclic_pickle_is_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(UntrustedDataError, match="shared or cyclic references"):
        decode_private_tests(pack(loop), "q")


def test_malformed_private_tests_are_data_errors():
    with pytest.raises(LiveCodeBenchDataError, match="neither JSON nor base64"):
        decode_private_tests("not base64 at all: é", "q1")
    with pytest.raises(LiveCodeBenchDataError, match="neither JSON nor base64\\+zlib"):
        decode_private_tests(base64.b64encode(b"not zlib").decode(), "q2")
    with pytest.raises(LiveCodeBenchDataError, match="not a readable pickle"):
        decode_private_tests(base64.b64encode(zlib.compress(b"garbage")).decode(), "q3")
    with pytest.raises(LiveCodeBenchDataError, match="has no 'testtype'"):
        decode_private_tests(json.dumps([{"input": "1", "output": "2"}]), "q4")
    with pytest.raises(LiveCodeBenchDataError, match="testtype 'interactive'"):
        decode_private_tests(pack(json.dumps(
            [{"input": "1", "output": "2", "testtype": "interactive"}])), "q5")


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    with pytest.raises(UntrustedDataError) as err:
        load_problems(MALICIOUS, "release_v1")
    assert "'evil_exec'" in str(err.value)
    assert "builtins.exec" in str(err.value)
    assert "nothing was executed" in str(err.value)

    with pytest.raises(UntrustedDataError) as err:
        load_problems(MALICIOUS, "v1", platform="codeforces")
    assert "'evil_system'" in str(err.value)
    assert "system" in str(err.value)
    assert not marker.exists()


def test_malicious_fixture_really_runs_code_under_plain_pickle(tmp_path):
    """Control for the test above: the fixture's blobs do execute code when read the way
    LiveCodeBench's own loader reads them (pickle.loads), here in a throwaway process."""
    records = [json.loads(line) for line in (MALICIOUS / "test.jsonl").read_text().splitlines()]
    for record in records:
        if not record["question_id"].startswith("evil_"):
            continue
        marker = tmp_path / f"{record['question_id']}.marker"
        code = ("import base64, pickle, sys, zlib; "
                "pickle.loads(zlib.decompress(base64.b64decode(sys.stdin.read())))")
        subprocess.run([sys.executable, "-c", code], input=record["private_test_cases"],
                       text=True, env={**os.environ, MARKER_ENV: str(marker)}, timeout=60,
                       capture_output=True)
        assert marker.exists(), record["question_id"]


def test_filtered_out_malicious_problems_are_never_decoded(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    got = load_problems(MALICIOUS, "release_v1", platform="atcoder")
    assert ids(got) == ["abc903_a"]
    assert got[0].private_test_cases == (TestCase("0\n", "0\n", "stdin"),
                                         TestCase("-4\n", "-8\n", "stdin"))
    assert ids(load_problems(MALICIOUS, "release_v1", end_date="2024-05-31")) == ["abc903_a"]
    assert not marker.exists()


def test_oversized_payload_is_refused(tmp_path):
    assert MAX_DECOMPRESSED_BYTES == 512 * 1024 * 1024
    tests = [{"input": "0" * (4 * 1024 * 1024), "output": "0", "testtype": "stdin"}]
    blob = pack(json.dumps(tests))
    assert len(blob) < 64 * 1024  # a ~4 MB payload in a few KB: a compression bomb in miniature
    with pytest.raises(UntrustedDataError) as err:
        decode_private_tests(blob, "bomb", max_decompressed_bytes=1024 * 1024)
    assert "'bomb'" in str(err.value)
    assert f"more than {1024 * 1024} bytes" in str(err.value)
    # The same payload under a cap it fits: decoded in full.
    assert decode_private_tests(blob, "bomb", max_decompressed_bytes=8 * 1024 * 1024)[0] == \
        TestCase("0" * (4 * 1024 * 1024), "0", "stdin")

    record = json.loads((FIXTURES / "test.jsonl").read_text().splitlines()[0])
    record.update(question_id="bomb", private_test_cases=blob)
    (tmp_path / "test.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(UntrustedDataError, match="'bomb'.*inflate to more than 1048576 bytes"):
        load_problems(tmp_path, "v1", max_decompressed_bytes=1024 * 1024)


def test_malformed_record_names_file_and_line(tmp_path):
    good = (FIXTURES / "test.jsonl").read_text().splitlines()
    record = json.loads(good[1])
    del record["difficulty"]
    (tmp_path / "test.jsonl").write_text(good[0] + "\n\n" + json.dumps(record) + "\n")
    with pytest.raises(LiveCodeBenchDataError) as err:
        load_problems(tmp_path, "v1")
    assert f"{tmp_path / 'test.jsonl'}:3: missing field(s) difficulty" in str(err.value)

    (tmp_path / "test.jsonl").write_text(good[0] + "\n{not json\n")
    with pytest.raises(LiveCodeBenchDataError, match="test.jsonl:2: not a JSON line"):
        load_problems(tmp_path, "v1")

    record = json.loads(good[0])
    record["platform"] = "topcoder"
    (tmp_path / "test.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(LiveCodeBenchDataError, match="problem '9001'.*unknown platform"):
        load_problems(tmp_path, "v1")


# --- lm-eval custom_dataset -----------------------------------------------------------------

def test_lm_eval_dataset_rows_and_columns():
    dsd = lm_eval_dataset(str(FIXTURES), release="release_v3", cache_dir="/tmp/x",
                          revision="main", version=1.0, num_fewshot=0)
    assert list(dsd) == ["test"]
    test = dsd["test"]
    assert test.num_rows == 8
    assert test.column_names == list(DOC_COLUMNS)
    assert {name: f.dtype for name, f in test.features.items()} == {
        name: "string" for name in DOC_COLUMNS}
    assert test["question_id"] == ALL
    row = test[0]
    assert row["func_name"] == "twoSum"
    assert row["contest_date"] == "2023-06-18T00:00:00"
    assert json.loads(row["public_tests"]) == [
        {"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": "functional"}]
    assert test[1]["func_name"] is None
    assert len(json.loads(test[5]["private_tests"])) == 4
    assert test["difficulty"] == ["easy", "easy", "medium", "medium", "medium", "hard", "hard",
                                  "easy"]


def test_lm_eval_dataset_applies_filters_and_sample():
    dsd = lm_eval_dataset(str(FIXTURES), "release_v3", difficulty=["hard"])
    assert dsd["test"]["question_id"] == ["1950_C", "9003"]
    dsd = lm_eval_dataset(str(FIXTURES), "release_v3", start_date="2024-01-01",
                          end_date="2024-12-31", platform=["atcoder"])
    assert dsd["test"]["question_id"] == ["abc901_b"]
    sampled = lm_eval_dataset(str(FIXTURES), "release_v3", sample_size=3, seed=7)
    assert sampled["test"]["question_id"] == ids(
        load_problems(FIXTURES, "release_v3", sample_size=3, seed=7))


def test_lm_eval_dataset_refuses_an_empty_selection():
    with pytest.raises(ValueError, match="no LiveCodeBench problems .* match release='v3'"):
        lm_eval_dataset(str(FIXTURES), "v3", platform="codeforces")


def test_lm_eval_task_loads_it_as_custom_dataset():
    from lm_eval.api.task import ConfigurableTask

    task = ConfigurableTask(config={
        "task": "lcb_fixture",
        "custom_dataset": lm_eval_dataset,
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{question_content}}",
        "doc_to_target": "",
        "generation_kwargs": {"until": []},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean",
                         "higher_is_better": True}],
        "metadata": {"version": 1.0, "data_dir": str(FIXTURES), "release": "release_v2",
                     "difficulty": ["easy", "medium"]},
        "dataset_kwargs": {"cache_dir": None, "revision": "abc"},
    })
    docs = list(task.test_docs())
    assert [d["question_id"] for d in docs] == ["9001", "abc900_a", "1900_A", "9002", "abc901_b"]
    assert task.doc_to_text(docs[0]).startswith("Given an array of integers nums")


# --- fixture solutions ----------------------------------------------------------------------

def test_solutions_cover_every_problem_in_the_right_form():
    solutions = json.loads((FIXTURES / "solutions.json").read_text())
    problems = load_problems(FIXTURES, "release_v3")
    assert sorted(solutions) == sorted(ALL)
    for p in problems:
        for kind in ("correct", "wrong"):
            tree = ast.parse(solutions[p.question_id][kind])
            classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
            if p.func_name:
                assert [c.name for c in classes] == ["Solution"]
                assert p.func_name in [f.name for f in classes[0].body
                                       if isinstance(f, ast.FunctionDef)]
            else:
                assert classes == [] and p.starter_code == ""


def test_correct_solutions_pass_and_wrong_ones_fail():
    make = _load_make_fixtures()
    solutions = json.loads((FIXTURES / "solutions.json").read_text())
    for p in load_problems(FIXTURES, "release_v3"):
        doc = to_doc(p)
        tests = json.loads(doc["public_tests"]) + json.loads(doc["private_tests"])
        assert make.passes(solutions[p.question_id]["correct"], doc, tests), p.question_id
        assert not make.passes(solutions[p.question_id]["wrong"], doc, tests), p.question_id


def test_problem_is_a_frozen_dataclass_with_the_dataset_fields():
    names = [f.name for f in dataclasses.fields(Problem)]
    assert names == list(lcb.FIELDS) + ["func_name"]
    assert [f.name for f in dataclasses.fields(TestCase)] == ["input", "output", "testtype"]
