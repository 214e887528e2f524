"""Streamed chat completions (model.stream) against the loopback fault server: the same answer and usage
as a non-streamed one, time to first token and tokens/s checked against the server's own timing, and
the deadlines: a stalled stream, keep-alive comments only, a cut mid-answer, a trickle past the
attempt deadline. Each fails on its deadline (retried first), never hangs."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from harness.config import ModelConfig
from harness.endpoints.base import RequestFailed
from harness.endpoints.openai_compat import OpenAICompatEndpoint
from tests.fault_server import FaultServer, chat_body, malformed, ok, status, streamed
from tests.test_endpoint_faults import KEY, KEY_ENV, make_request

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def cfg(**overrides) -> ModelConfig:
    fields = dict(name="stream-test", model_id="m", provider="openai_compat", api_key_env=KEY_ENV, max_retries=2,
                  concurrency=2, stream=True, idle_timeout_s=5.0, first_token_timeout_s=5.0, attempt_timeout_s=30.0)
    fields.update(overrides)
    return ModelConfig(**fields)


def complete(server: FaultServer, model: ModelConfig, request=None):
    async def go():
        endpoint = OpenAICompatEndpoint(model, server.base_url, retry_backoff_s=0.01)
        try:
            return await endpoint.complete(request or make_request(params={"max_tokens": 64}))
        finally:
            await endpoint.aclose()
    return asyncio.run(go())


def test_streamed_answer_equals_the_non_streamed_one_and_its_timing_matches_the_server():
    body = chat_body("The answer is forty-two, as computed.", prompt_tokens=7, completion_tokens=10)
    with FaultServer() as server:
        server.stream_interval_s = 0.05
        server.plan(("delay", 0.3, body), ok(body))
        streamed_result = complete(server, cfg())
        plain = complete(server, cfg(stream=False))
        log = server.stream_log[0]
        sent = server.requests[0]
    assert streamed_result.text == plain.text == "The answer is forty-two, as computed."
    assert streamed_result.usage == plain.usage and streamed_result.usage_status == "reported"
    assert sent["json"]["stream"] is True and sent["json"]["stream_options"] == {"include_usage": True}
    assert plain.ttft_s is None and plain.tokens_per_s is None
    # Time to first token: the server's 0.3 s before its first chunk, plus loopback time.
    server_ttft = log["first_chunk"] - log["arrived"]
    assert server_ttft >= 0.3 and abs(streamed_result.ttft_s - server_ttft) < 0.05, (streamed_result.ttft_s, server_ttft)
    # Tokens per second after the first: 9 more tokens over the server's first-to-last chunk span.
    server_tps = 9 / (log["last_chunk"] - log["first_chunk"])
    assert streamed_result.tokens_per_s == pytest.approx(server_tps, rel=0.25)
    assert streamed_result.max_gap_s >= 0.04


def test_reasoning_then_answer_gives_a_later_first_answer_token():
    body = chat_body("42")
    body["choices"][0]["message"]["reasoning_content"] = "let me think about this carefully"
    with FaultServer() as server:
        server.stream_interval_s = 0.03
        server.plan(ok(body))
        result = complete(server, cfg())
    assert (result.text, result.reasoning) == ("42", "let me think about this carefully")
    assert result.answer_ttft_s > result.ttft_s + 0.1


def test_a_stalled_stream_is_cut_at_the_idle_timeout_and_retried():
    with FaultServer() as server:
        server.plan(streamed(chat_body("a long answer that stops"), stall_after=2, stall_s=30), ok(chat_body("done")))
        started = time.monotonic()
        result = complete(server, cfg(idle_timeout_s=0.5))
    assert result.text == "done" and time.monotonic() - started < 5
    assert server.outcomes["stream_stall"] == 1


@pytest.mark.parametrize("filler", [
    "keepalive_s",     # ": keep-alive" comments every 0.05 s for 10 s
    "empty_events_s",  # valid events with empty deltas every 0.05 s (they counted while any event was progress)
])
def test_what_carries_no_token_does_not_move_the_first_token_deadline(filler):
    with FaultServer() as server:
        server.plan(streamed(chat_body("late"), **{filler: 10}))
        started = time.monotonic()
        with pytest.raises(RequestFailed) as info:
            complete(server, cfg(first_token_timeout_s=0.6, max_retries=0))
    assert info.value.kind == "timeout" and "first token" in str(info.value)
    assert 0.5 < time.monotonic() - started < 3


def test_a_cut_mid_answer_is_named_as_such_and_retried():
    with FaultServer() as server:
        server.plan(*[streamed(chat_body("cut short again"), cut_after=2)] * 3)
        with pytest.raises(RequestFailed) as info:
            complete(server, cfg(max_retries=2))
        assert server.received == 3
    assert info.value.kind == "connection" and "cut mid-answer" in str(info.value)
    assert "is the server up" not in str(info.value)


def test_a_trickle_is_stopped_by_the_attempt_deadline():
    with FaultServer() as server:
        server.stream_interval_s = 0.3  # 20 chunks: 6 s
        server.plan(ok(chat_body("x" * 80)))
        started = time.monotonic()
        with pytest.raises(RequestFailed) as info:
            complete(server, cfg(attempt_timeout_s=1.0, max_retries=0))
    assert info.value.kind == "timeout" and "attempt_timeout_s" in str(info.value)
    assert time.monotonic() - started < 3


def test_silence_past_the_attempt_deadline_is_named_by_the_attempt_deadline():
    """One timer keeps the first-token, idle and attempt deadlines: whichever is nearest fires and
    is named (here the attempt's 1 s, before the first token's 5 s)."""
    with FaultServer() as server:
        server.plan(streamed(chat_body("never sent"), stall_after=0, stall_s=6.0))
        started = time.monotonic()
        with pytest.raises(RequestFailed) as info:
            complete(server, cfg(attempt_timeout_s=1.0, max_retries=0))
    assert info.value.kind == "timeout" and "attempt_timeout_s=1" in str(info.value)
    assert "stalled" not in str(info.value)
    assert 0.9 < time.monotonic() - started < 3


def test_a_stream_without_usage_is_estimated_and_timed_by_chunks():
    body = chat_body("sixteen chars!!!")
    del body["usage"]
    with FaultServer() as server:
        server.stream_interval_s = 0.02
        server.plan(ok(body))
        result = complete(server, cfg())
    assert result.usage_status == "estimated" and result.tokens_per_s is not None


def test_a_stream_that_ends_without_finishing_is_not_an_answer():
    with FaultServer() as server:
        server.plan(*[streamed(chat_body("The answer is"), no_finish=True)] * 2)
        with pytest.raises(RequestFailed) as info:
            complete(server, cfg(max_retries=1))
    assert info.value.kind == "connection" and "ended before the answer was complete" in str(info.value)


def test_a_stream_event_past_the_cap_is_malformed(monkeypatch):
    import harness.endpoints.wire as wire

    monkeypatch.setattr(wire, "MAX_EVENT_BYTES", 1000)
    with FaultServer() as server:
        # One event line of 5,000 bytes and no line end: refused once it passes 1,000, not buffered whole.
        line = ("raw", 200, {"Content-Type": "text/event-stream"}, b"data: " + b"x" * 5000)
        server.plan(line, line)
        with pytest.raises(RequestFailed) as info:
            complete(server, cfg(max_retries=1))
    assert info.value.kind == "malformed" and "event longer than 1000 bytes" in str(info.value)


def test_a_stream_past_its_total_cap_is_malformed(monkeypatch):
    import harness.endpoints.openai_compat as openai_compat

    monkeypatch.setattr(openai_compat, "MIN_STREAM_BYTES", 20_000)
    monkeypatch.setattr(openai_compat, "STREAM_BYTES_PER_TOKEN", 1)
    with FaultServer() as server:
        server.plan(*[ok(chat_body("y" * 4000))] * 2)  # 1,000 events of ~150 bytes
        with pytest.raises(RequestFailed) as info:
            complete(server, cfg(max_retries=1))
        assert info.value.kind == "malformed" and "longer than 20000 bytes" in str(info.value)
        server.plan(ok(chat_body("y" * 40)))
        assert complete(server, cfg()).text == "y" * 40


def test_a_server_that_ignores_stream_true_is_read_as_a_whole_answer():
    with FaultServer() as server:
        server.plan(("raw", 200, {"Content-Type": "application/json"},
                     json.dumps(chat_body("not streamed", prompt_tokens=3, completion_tokens=2)).encode()))
        result = complete(server, cfg())
    assert result.text == "not streamed" and result.usage.output_tokens == 2 and result.ttft_s is None


@pytest.mark.parametrize("events, text", [
    # SSE: an event's data lines are joined by newlines and end at a blank line; CRLF line ends.
    (b'data: {"choices": [{"index": 0,\ndata: "delta": {"content": "two lines"}}]}\n\n', "two lines"),
    (b'data: {"choices": [{"index": 0, "delta": {"content": "crlf"}}]}\r\n\r\n', "crlf"),
    # a second choice's deltas are another answer, not part of this one
    (b'data: {"choices": [{"index": 1, "delta": {"content": "WRONG "}}]}\n\n'
     b'data: {"choices": [{"index": 0, "delta": {"content": "right"}}]}\n\n', "right"),
    # "error": null is no error
    (b'data: {"error": null, "choices": [{"index": 0, "delta": {"content": "fine"}}]}\n\n', "fine"),
])
def test_event_stream_framing(events, text):
    finish = b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    with FaultServer() as server:
        server.plan(("raw", 200, {"Content-Type": "text/event-stream"}, events + finish))
        assert complete(server, cfg()).text == text


def test_events_that_are_not_json_alone_are_malformed_even_if_they_parse_together():
    events = b'data: {"choices": [{"index": 0, "delta": {"content": "A"}}]},{"x": 0\n\ndata: "y": 1}\n\n'
    finish = b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    with FaultServer() as server:
        server.plan(*[("raw", 200, {"Content-Type": "text/event-stream"}, events + finish)] * 2)
        with pytest.raises(RequestFailed) as info:
            complete(server, cfg(max_retries=1))
    assert info.value.kind == "malformed"
