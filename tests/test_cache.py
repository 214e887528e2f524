"""Cache keys cover everything that changes the answer; rows survive a crash of the writer."""

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from harness.endpoints.cache import ResponseCache, cache_key
from harness.endpoints.base import ChatRequest, Completion, Usage

BASE = ChatRequest(
    messages=({"role": "user", "content": "2+2?"},),
    model_id="deepseek-v4-flash",
    params={"max_tokens": 256, "temperature": 0.0, "extra_body": {"thinking": {"type": "disabled"}}},
    stop=("Question:",),
)
COMPLETION = Completion("4", "2+2=4", "stop", Usage(10, 4, 3, 1), "deepseek-v4-flash", "fp1", 0.5)


@pytest.mark.parametrize(
    "changed",
    [
        dataclasses.replace(BASE, messages=({"role": "user", "content": "2+3?"},)),
        dataclasses.replace(BASE, messages=({"role": "system", "content": "2+2?"},)),
        dataclasses.replace(BASE, model_id="deepseek-v4-pro"),
        dataclasses.replace(BASE, params={**BASE.params, "max_tokens": 257}),
        dataclasses.replace(BASE, params={**BASE.params, "temperature": 0.7}),
        dataclasses.replace(BASE, params={**BASE.params, "seed": 1}),
        dataclasses.replace(BASE, params={**BASE.params, "extra_body": {"thinking": {"type": "enabled"}}}),
        dataclasses.replace(BASE, stop=("Question:", "</s>")),
    ],
    ids=["content", "role", "model", "max_tokens", "temperature", "seed", "thinking", "stop"],
)
def test_any_change_is_a_miss(changed, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put(cache_key("https://api.deepseek.com", BASE), BASE, COMPLETION, 0.01)
    assert cache.get(cache_key("https://api.deepseek.com", changed)) is None
    assert cache.get(cache_key("https://api.deepseek.com", BASE)) is not None


def test_endpoint_identity_is_part_of_the_key():
    assert cache_key("https://api.deepseek.com", BASE) != cache_key("http://127.0.0.1:8000/v1", BASE)


def test_key_ignores_dict_order():
    reordered = dataclasses.replace(BASE, params=dict(reversed(list(BASE.params.items()))))
    assert cache_key("e", reordered) == cache_key("e", BASE)


def test_round_trip_keeps_usage_and_cost(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    key = cache_key("e", BASE)
    cache.put(key, BASE, COMPLETION, 0.0123)
    cache.close()
    completion, cost = ResponseCache(tmp_path / "c.sqlite").get(key)
    assert completion == COMPLETION
    assert cost == 0.0123


def test_rows_survive_a_writer_killed_without_closing(tmp_path):
    path = tmp_path / "c.sqlite"
    script = textwrap.dedent(f"""
        import os
        from harness.endpoints.cache import ResponseCache, cache_key
        from harness.endpoints.base import ChatRequest, Completion, Usage
        cache = ResponseCache({str(path)!r})
        for i in range(5):
            req = ChatRequest(messages=({{"role": "user", "content": str(i)}},), model_id="m")
            cache.put(cache_key("e", req), req, Completion(str(i), None, "stop", Usage(i, 0, 1, 0), "m", None, 0.1), 0.0)
        os._exit(9)  # no close, no commit call, no atexit
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    cache = ResponseCache(path)
    assert len(cache) == 5
    req = ChatRequest(messages=({"role": "user", "content": "3"},), model_id="m")
    assert cache.get(cache_key("e", req))[0].usage.input_tokens == 3
