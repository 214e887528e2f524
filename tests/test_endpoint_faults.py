"""OpenAICompatEndpoint against a real fault-injecting HTTP server on loopback: retries, errors that
say what to do, bounded concurrency, and what actually goes over the wire (no SDK/httpx mocks).
Each fault alone, then a storm of them over 200 concurrent requests."""

from __future__ import annotations

import asyncio
import time
import traceback

import pytest

from harness.config import ModelConfig
from harness.endpoints.base import ChatRequest, Completion, EndpointError, RequestFailed
from harness.endpoints.openai_compat import OpenAICompatEndpoint
from tests.fault_server import (FaultServer, chat_body, delay, empty_choices, free_port, hang, keepalive,
                                malformed, null_content, ok, reset, status)

pytestmark = pytest.mark.timeout(30)

KEY_ENV = "HARNESS_TEST_KEY"
KEY = "sk-SENTINEL-123"
# Makes the SDK wait 10 ms before retrying instead of its 0.5-8 s exponential backoff.
FAST = {"retry-after-ms": "10"}


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


def make_cfg(**overrides) -> ModelConfig:
    fields = dict(name="fault-test", model_id="m", provider="openai_compat", api_key_env=KEY_ENV,
                  max_retries=3, concurrency=2, request_timeout_s=10.0)
    fields.update(overrides)
    return ModelConfig(**fields)


def make_request(**overrides) -> ChatRequest:
    fields = dict(messages=({"role": "user", "content": "hi"},), model_id="m", params={"max_tokens": 8})
    fields.update(overrides)
    return ChatRequest(**fields)


def run_with(base_url: str, use, cfg: ModelConfig | None = None):
    """asyncio.run(use(endpoint)) with a fresh endpoint (fast retries of malformed answers), closed after."""
    async def go():
        endpoint = OpenAICompatEndpoint(cfg or make_cfg(), base_url, retry_backoff_s=0.01)
        try:
            return await use(endpoint)
        finally:
            await endpoint.aclose()

    return asyncio.run(go())


def complete(base_url: str, cfg: ModelConfig | None = None, request: ChatRequest | None = None) -> Completion:
    return run_with(base_url, lambda endpoint: endpoint.complete(request or make_request()), cfg)


def expect_error(base_url: str, cfg: ModelConfig | None = None) -> EndpointError:
    with pytest.raises(EndpointError) as info:
        complete(base_url, cfg)
    return info.value


def expect_fatal(base_url: str, cfg: ModelConfig | None = None) -> EndpointError:
    err = expect_error(base_url, cfg)
    assert not isinstance(err, RequestFailed), f"{err!r} should stop the run"
    return err


def expect_failed(base_url: str, kind: str, cfg: ModelConfig | None = None) -> RequestFailed:
    with pytest.raises(RequestFailed) as info:
        complete(base_url, cfg)
    assert info.value.kind == kind, str(info.value)
    return info.value


# --- retries the SDK does for us -------------------------------------------------------------------

def test_429_honours_retry_after_then_succeeds(server):
    server.plan(status(429, headers={"Retry-After": "1"}), ok(chat_body("recovered")))
    result = complete(server.base_url)
    assert result.text == "recovered"
    assert result.usage.input_tokens == 5 and result.usage.output_tokens == 2
    assert len(server.requests) == 2
    gap = server.requests[1]["t"] - server.requests[0]["t"]
    assert gap >= 0.9, f"retried after {gap:.3f}s, Retry-After said 1s"


def test_500_then_503_then_ok_succeeds_after_three_requests(server):
    server.plan(status(500, headers=FAST), status(503, headers=FAST), ok(chat_body("third time")))
    result = complete(server.base_url)
    assert result.text == "third time"
    assert result.finish_reason == "stop"
    assert len(server.requests) == 3


def test_persistent_500_gives_up_after_max_retries(server):
    server.plan(*[status(500, headers=FAST)] * 10)
    err = expect_failed(server.base_url, "server_error", make_cfg(max_retries=2))
    assert err.status == 500
    assert len(server.requests) == 3  # 1 try + 2 retries
    assert "500" in str(err)
    assert "still failing after up to 2 retries" in str(err)


# --- errors that are never retried -------------------------------------------------------------------

def test_400_not_retried_and_carries_server_message(server):
    server.plan(status(400, {"error": {"message": "max_tokens is too large: 99999",
                                       "type": "invalid_request_error"}}))
    err = expect_failed(server.base_url, "bad_request")
    assert err.status == 400
    assert len(server.requests) == 1
    assert "400" in str(err)
    assert "max_tokens is too large: 99999" in str(err)
    assert "fault-test" in str(err)
    assert "after retries" not in str(err)


@pytest.mark.parametrize("code, kind, advice", [
    (422, "bad_request", "refused this request"),
    (413, "bad_request", "refused this request"),
    (402, None, "top it up"),  # DeepSeek: insufficient balance
    (403, None, KEY_ENV),
    (404, None, "model.model_id ('m')"),
])
def test_client_errors_not_retried(server, code, kind, advice):
    """A prompt the server refuses fails that sample; what the configuration must fix stops the run."""
    server.plan(status(code, {"error": {"message": f"server says no ({code})"}}))
    err = expect_error(server.base_url)
    assert len(server.requests) == 1
    assert str(code) in str(err)
    assert f"server says no ({code})" in str(err)
    assert advice in str(err)
    if kind is None:
        assert not isinstance(err, RequestFailed)
    else:
        assert isinstance(err, RequestFailed) and err.kind == kind and err.status == code


def test_401_names_key_variable_but_never_the_key(server):
    server.plan(status(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    err = expect_fatal(server.base_url)
    assert len(server.requests) == 1
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    message = str(err)
    assert "401" in message
    assert KEY_ENV in message
    assert KEY not in message
    # Nor in the traceback a user would see.
    assert KEY not in "".join(traceback.format_exception(err))


def test_unreachable_endpoint_names_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    err = expect_fatal(url, make_cfg(max_retries=0))  # never answered: a wrong URL or a server down
    assert url in str(err)
    assert time.monotonic() - started < 5


# --- bounded concurrency ---------------------------------------------------------------------------

def test_concurrency_is_bounded(server):
    server.plan(*[delay(0.3, chat_body(f"r{i}")) for i in range(6)])

    async def go() -> list[Completion]:
        endpoint = OpenAICompatEndpoint(make_cfg(concurrency=2), server.base_url)
        try:
            return await asyncio.gather(*(endpoint.complete(make_request()) for _ in range(6)))
        finally:
            await endpoint.aclose()

    started = time.monotonic()
    results = asyncio.run(go())
    elapsed = time.monotonic() - started
    assert sorted(r.text for r in results) == [f"r{i}" for i in range(6)]
    assert len(server.requests) == 6
    assert server.max_in_flight == 2
    assert elapsed >= 0.85  # three waves of 0.3 s


# --- what goes over the wire -----------------------------------------------------------------------

def test_authorization_header_carries_env_key(server):
    complete(server.base_url)
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    body = server.bodies()[0]
    assert body["model"] == "m"
    assert body["messages"] == [{"role": "user", "content": "hi"}]


def test_stop_sequences_capped_to_model_limit_and_all_applied_client_side(server):
    server.plan(ok(chat_body("hello C world")))
    result = complete(server.base_url, make_cfg(max_stop_sequences=2), make_request(stop=("A", "B", "C")))
    assert server.bodies()[0]["stop"] == ["A", "B"]
    assert result.text == "hello "  # "C" was not sent but is still applied


def test_no_stop_field_when_model_accepts_none_but_text_still_cut(server):
    server.plan(ok(chat_body("hello STOP world")))
    result = complete(server.base_url, make_cfg(max_stop_sequences=0), make_request(stop=("STOP",)))
    assert "stop" not in server.bodies()[0]
    assert result.text == "hello "


@pytest.mark.parametrize("provider, sent, not_sent", [
    ("openai", "max_completion_tokens", "max_tokens"),
    ("openai_compat", "max_tokens", "max_completion_tokens"),
])
def test_max_tokens_field_name_per_provider(server, provider, sent, not_sent):
    complete(server.base_url, make_cfg(provider=provider))
    body = server.bodies()[0]
    assert body[sent] == 8
    assert not_sent not in body


def test_extra_body_fields_arrive_top_level(server):
    request = make_request(params={"max_tokens": 8, "temperature": 0.0,
                                   "extra_body": {"thinking": {"type": "disabled"}}})
    complete(server.base_url, request=request)
    body = server.bodies()[0]
    assert body["thinking"] == {"type": "disabled"}
    assert "extra_body" not in body
    assert body["max_tokens"] == 8
    assert body["temperature"] == 0.0


# --- the key's environment variable -------------------------------------------------------------------

def test_missing_key_env_fails_at_construction(monkeypatch, server):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(EndpointError) as info:
        OpenAICompatEndpoint(make_cfg(), server.base_url)
    assert KEY_ENV in str(info.value)
    assert "conf/model/fault-test.yaml" in str(info.value)
    assert server.requests == []


def test_missing_key_env_is_fine_when_key_optional(monkeypatch, server):
    monkeypatch.delenv(KEY_ENV)
    result = complete(server.base_url, make_cfg(api_key_optional=True))
    assert result.text == "ok"
    assert server.requests[0]["headers"]["Authorization"] == "Bearer not-needed"


def test_rejected_key_is_not_reachable_through_the_exception_chain(server):
    server.plan(status(401, {"error": {"message": "invalid key"}}))
    err = expect_error(server.base_url)
    chain, seen = [], err
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    assert chain == [err]  # nothing attached that could carry the request headers
    assert KEY not in repr(vars(err))


def test_slow_server_is_reported_as_a_timeout_not_as_unreachable(server):
    server.plan(delay(2.0, chat_body()))
    err = expect_failed(server.base_url, "timeout", make_cfg(request_timeout_s=0.5, max_retries=0))
    assert "request_timeout_s=0.5" in str(err) and "cannot reach" not in str(err)


# --- each fault alone ------------------------------------------------------------------------------

def test_429_without_retry_after_backs_off_without_a_slot_and_reaches_the_limiter(server):
    server.plan(status(429), ok(chat_body("after backoff")))

    async def use(endpoint):
        result = await endpoint.complete(make_request())
        return result, endpoint.limiter.rate_limited, endpoint.limiter.limit

    result, seen, limit = run_with(server.base_url, use, make_cfg(concurrency=8))
    assert result.text == "after backoff"
    gap = server.requests[1]["t"] - server.requests[0]["t"]
    assert 0.035 <= gap < 2, f"backoff without Retry-After is 0.0375-0.0625 s (without a slot), was {gap:.3f}"
    assert seen == 1 and limit == 4  # the 429 halved the limit


def test_persistent_429_is_a_per_request_rate_limit_failure_once_patience_runs_out(server):
    # Slow-down answers are waited out for model.rate_limit_patience_s, not a retry count: after the
    # SDK's own retries, rounds of waiting (0.5 s doubling, or what the server asks) until 1.2 s pass.
    server.plan(*[status(429, headers=FAST)] * 20)
    started = time.monotonic()
    err = expect_failed(server.base_url, "rate_limit", make_cfg(max_retries=2, rate_limit_patience_s=1.2))
    assert err.status == 429 and "model.rate_limit_patience_s=1.2" in str(err)
    # Every attempt is one HTTP request holding a slot only while on the wire; between attempts the
    # request waits without a slot (0.05 s doubling, at least), so 1.2 s of patience is 3-8 attempts.
    assert 3 <= len(server.requests) <= 8 and time.monotonic() - started < 3


@pytest.mark.parametrize("code", [500, 503, 529])
def test_5xx_once_is_retried(server, code):
    server.plan(status(code, headers=FAST), ok(chat_body("fine")))
    assert complete(server.base_url).text == "fine"
    assert server.received == 2 and server.completed == 1
    assert server.outcomes == {str(code): 1, "ok": 1}


@pytest.mark.parametrize("code", [503, 529])
def test_persistent_overload_is_a_server_error(server, code):
    # Overloaded answers are slow-down answers: waited out for model.rate_limit_patience_s, like 429.
    server.plan(*[status(code, headers=FAST)] * 20)
    err = expect_failed(server.base_url, "server_error", make_cfg(max_retries=2, rate_limit_patience_s=1.2))
    assert err.status == code and 3 <= server.received <= 8  # one HTTP request per attempt, waits between


def test_connection_reset_is_retried(server):
    server.plan(reset(), ok(chat_body("reconnected")))
    assert complete(server.base_url).text == "reconnected"
    assert server.outcomes == {"reset": 1, "ok": 1}


def test_persistent_reset_fails_the_request_once_the_server_has_answered(server):
    server.plan(ok(chat_body("first")), reset(), reset())

    async def use(endpoint):
        first = await endpoint.complete(make_request())
        with pytest.raises(RequestFailed) as info:
            await endpoint.complete(make_request())
        return first, info.value

    first, err = run_with(server.base_url, use, make_cfg(max_retries=1))
    assert first.text == "first"
    assert err.kind == "connection" and server.base_url in str(err)
    # Told apart from an unreachable server: it accepted the connection and cut it.
    assert "cut it before the answer was complete" in str(err) and "is the server up" not in str(err)
    assert server.received == 3


def test_reset_before_any_answer_stops_the_run(server):
    server.plan(reset(), reset())
    err = expect_fatal(server.base_url, make_cfg(max_retries=1))
    assert "cannot reach" in str(err)


def test_hang_times_out_then_retry_succeeds(server):
    server.plan(hang(5), ok(chat_body("second try")))
    result = complete(server.base_url, make_cfg(request_timeout_s=0.3, max_retries=1))
    assert result.text == "second try"
    assert server.outcomes == {"hang": 1, "ok": 1}


def test_hang_past_the_retries_is_a_timeout_failure(server):
    server.plan(hang(5), hang(5))
    started = time.monotonic()
    err = expect_failed(server.base_url, "timeout", make_cfg(request_timeout_s=0.3, max_retries=1))
    assert "request_timeout_s=0.3" in str(err)
    assert time.monotonic() - started < 3
    assert server.completed == 0


@pytest.mark.parametrize("fault, kind", [(malformed, "malformed"), (empty_choices, "empty_choices")])
def test_unusable_200_is_retried_then_succeeds(server, fault, kind):
    server.plan(fault(), fault(), ok(chat_body("usable")))
    assert complete(server.base_url).text == "usable"
    assert server.outcomes == {kind: 2, "ok": 1}
    assert server.completed == 1


@pytest.mark.parametrize("fault, kind", [(malformed, "malformed"), (empty_choices, "empty_choices")])
def test_persistent_unusable_200_fails_after_max_retries(server, fault, kind):
    server.plan(*[fault()] * 5)
    err = expect_failed(server.base_url, kind, make_cfg(max_retries=2))
    assert err.status == 200 and "after up to 2 retries" in str(err)
    assert server.received == 3 and server.completed == 0


def test_malformed_text_body_is_malformed(server):
    server.plan(malformed("Internal proxy error"), *[malformed("<html>502</html>")] * 3)
    expect_failed(server.base_url, "malformed", make_cfg(max_retries=1))
    assert server.received == 2


def test_null_or_empty_content_is_retried_then_an_error_not_a_wrong_answer(server):
    """content null / "" with finish_reason "stop" and no reasoning is the server failing to answer."""
    server.plan(null_content(), ok(chat_body("")), ok(chat_body("the answer")))
    result = complete(server.base_url, make_cfg(max_retries=3))
    assert result.text == "the answer" and server.received == 3
    server.plan(*[null_content()] * 3)
    err = expect_failed(server.base_url, "empty", make_cfg(max_retries=2))
    assert "empty answer" in str(err)


def test_empty_content_cut_off_by_max_tokens_or_explained_by_reasoning_is_an_answer(server):
    length = chat_body(None)
    length["choices"][0]["finish_reason"] = "length"  # a thinking model that spent max_tokens reasoning
    thought = chat_body("")
    thought["choices"][0]["message"]["reasoning_content"] = "long thoughts"
    server.plan(ok(length), ok(thought))
    first, second = complete(server.base_url), complete(server.base_url)
    assert (first.text, first.finish_reason) == ("", "length")  # counted as truncated downstream
    assert (second.text, second.reasoning) == ("", "long thoughts")
    assert server.received == 2


@pytest.mark.parametrize("usage, why", [
    ({"prompt_tokens": "many", "completion_tokens": 2}, "not a token count"),
    ({"prompt_tokens": 5, "completion_tokens": -3}, "not a token count"),
    ({"prompt_tokens": 10 ** 12, "completion_tokens": 2}, "prompt tokens for a prompt of at most"),
    ({"prompt_tokens": 5, "completion_tokens": 10 ** 12}, "output tokens with max_tokens=8"),
    ({"prompt_tokens": 5, "completion_tokens": 2, "prompt_cache_hit_tokens": 50}, "cached of 5"),
    ("lots", "usage is not an object"),
])
def test_impossible_usage_keeps_the_answer_and_bills_the_worst_case(server, usage, why):
    server.plan(ok(chat_body("fine", usage=usage)))
    request = make_request()
    result = complete(server.base_url, request=request)
    assert result.text == "fine" and result.usage_status == "suspect" and why in result.usage_note
    from harness.spend.budget import prompt_token_bound

    # Billed at the request's worst case: every prompt token its bytes allow, max_tokens out; never 10^12.
    assert result.usage.input_tokens == prompt_token_bound(request) and result.usage.output_tokens == 8
    assert result.usage.cached_input_tokens == 0


@pytest.mark.parametrize("message", [
    {"role": "assistant", "content": ["a", "list"]},
    {"role": "assistant", "content": 5},
    {"role": "assistant", "content": {"a": 1}},
    {"role": "assistant", "content": "", "reasoning_content": 7},
])
def test_content_that_is_not_text_is_malformed_not_a_crash(server, message):
    body = chat_body("x")
    body["choices"][0]["message"] = message
    server.plan(*[ok(body)] * 2)
    expect_failed(server.base_url, "malformed", make_cfg(max_retries=1))


def test_a_body_nested_past_the_parser_is_malformed_not_a_crash(server):
    server.plan(*[malformed("[" * 200_000 + "]" * 200_000)] * 2)
    expect_failed(server.base_url, "malformed", make_cfg(max_retries=1))


def test_zero_usage_for_a_real_exchange_is_suspect(server):
    server.plan(ok(chat_body("a real answer", prompt_tokens=0, completion_tokens=0)))
    result = complete(server.base_url)
    assert result.usage_status == "suspect" and "0 prompt tokens" in result.usage_note
    assert "0 output tokens" in result.usage_note and result.usage.output_tokens == 8


def test_missing_usage_is_estimated_and_said_so(server):
    body = chat_body("four bytes x3")
    del body["usage"]
    server.plan(ok(body))
    result = complete(server.base_url)
    assert result.usage_status == "estimated" and "estimated" in result.usage_note
    assert result.usage.output_tokens == 4  # 13 bytes / 4, rounded up
    assert result.usage.input_tokens == 1  # "hi": 2 bytes / 4, rounded up


def test_plausible_usage_is_reported_as_is(server):
    server.plan(ok(chat_body("ok", prompt_tokens=3, completion_tokens=2)))
    result = complete(server.base_url)
    assert (result.usage_status, result.usage.input_tokens, result.usage.output_tokens) == ("reported", 3, 2)


def test_keepalive_blank_lines_before_the_json(server):
    """DeepSeek keeps a slow non-streaming answer alive with blank lines: each resets the read
    timeout, so the answer arrives although it took longer than request_timeout_s."""
    server.plan(keepalive(6, chat_body("kept alive", prompt_tokens=11, completion_tokens=3), interval_s=0.15))
    started = time.monotonic()
    result = complete(server.base_url, make_cfg(request_timeout_s=0.5, max_retries=0))
    assert time.monotonic() - started > 0.8
    assert result.text == "kept alive"
    assert result.usage.input_tokens == 11 and result.usage.output_tokens == 3
    assert server.outcomes == {"keepalive": 1} and server.completed == 1


# --- the default answer and drawn faults -----------------------------------------------------------

def test_default_answer_uses_content_fn_and_token_counts():
    echo = lambda body: body["messages"][-1]["content"].upper()  # noqa: E731
    with FaultServer(latency_s=0.05, prompt_tokens=17, completion_tokens=4, content_fn=echo) as server:
        result = complete(server.base_url, request=make_request(messages=({"role": "user", "content": "abc"},)))
    assert result.text == "ABC"
    assert result.usage.input_tokens == 17 and result.usage.output_tokens == 4
    assert result.latency_s >= 0.05
    assert server.outcomes == {"ok": 1} and server.completed == 1


def test_fault_rates_are_drawn_from_a_seeded_rng():
    rates = {"429": 0.2, "500": 0.1, "reset": 0.1, "malformed": 0.1}

    def outcomes(seed):
        with FaultServer(fault_rates=rates, seed=seed, fault_headers=FAST) as server:
            async def use(endpoint):
                return await asyncio.gather(*(endpoint.complete(make_request()) for _ in range(100)),
                                            return_exceptions=True)

            run_with(server.base_url, use, make_cfg(max_retries=0, concurrency=1, rate_limit_patience_s=0))
            return server.outcomes

    first = outcomes(7)
    assert first == outcomes(7)  # one at a time, so arrival order, hence every draw, is the same
    assert sum(first.values()) == 100
    assert 35 <= first["ok"] <= 65 and first["429"] >= 10 and first["reset"] >= 3


# --- a storm ---------------------------------------------------------------------------------------

def test_storm_of_faults_over_200_concurrent_requests():
    """30 % of answers are faults; every request ends as a Completion or a RequestFailed, each
    Completion is the answer to its own prompt, and the server billed exactly the Completions we got."""
    rates = {"429": 0.10, "500": 0.05, "503": 0.05, "reset": 0.05, "malformed": 0.05}
    echo = lambda body: body["messages"][-1]["content"]  # noqa: E731
    n = 200
    with FaultServer(latency_s=0.02, content_fn=echo, fault_rates=rates, seed=1, fault_headers=FAST) as server:
        async def use(endpoint):
            requests = [make_request(messages=({"role": "user", "content": f"prompt {i}"},)) for i in range(n)]
            return await asyncio.gather(*(endpoint.complete(r) for r in requests), return_exceptions=True)

        started = time.monotonic()
        results = run_with(server.base_url, use, make_cfg(max_retries=3, concurrency=n))
        elapsed = time.monotonic() - started

    assert len(results) == n
    unexpected = [r for r in results if not isinstance(r, (Completion, RequestFailed))]
    assert unexpected == []
    completions = [r for r in results if isinstance(r, Completion)]
    failures = [r for r in results if isinstance(r, RequestFailed)]
    for i, r in enumerate(results):
        if isinstance(r, Completion):
            assert r.text == f"prompt {i}"
    assert server.completed == len(completions)  # nothing billed that we did not get, nothing twice
    faults = server.received - server.outcomes["ok"]
    assert faults / server.received > 0.2, server.outcomes
    assert {f.kind for f in failures} <= {"rate_limit", "server_error", "connection", "malformed"}
    # Four tries each at 30 % faults: about 0.3**4 = 0.8 % of requests fail.
    assert len(failures) <= 10, [str(f) for f in failures]
    assert elapsed < 20


# --- what a server sends is bounded (harness.endpoints.wire) -----------------------------------------

@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_names_the_fix(server, code):
    server.plan(status(code, body={}, headers={"Location": "http://elsewhere.example/v1/chat/completions"}))
    err = expect_fatal(server.base_url)
    assert f"answered {code}, a redirect to http://elsewhere.example/v1/chat/completions" in str(err)
    assert "model.base_url" in str(err) and server.received == 1  # not followed, not retried


def test_a_body_past_the_cap_is_malformed_and_not_read_whole(server, monkeypatch):
    import harness.endpoints.openai_compat as openai_compat

    monkeypatch.setattr(openai_compat, "MIN_BODY_BYTES", 10_000)
    server.plan(*[ok(chat_body("x" * 20_000))] * 2)
    err = expect_failed(server.base_url, "malformed", make_cfg(max_retries=1))
    assert "longer than 10000 bytes" in str(err)
    server.plan(ok(chat_body("x" * 5_000)))  # under the cap: read as usual
    assert complete(server.base_url).text == "x" * 5_000


@pytest.mark.parametrize("content", ["\u200b", " \u200b\u200d\ufeff \n", "\u2060" * 200, "\t \n",
                                     "\u3164\u2800\u034f", "\x00\x01\x7f"])
def test_an_answer_of_invisible_characters_is_empty(server, content):
    server.plan(*[ok(chat_body(content))] * 2)
    expect_failed(server.base_url, "empty", make_cfg(max_retries=1))


def test_a_reasoning_count_widens_the_output_bound_only_as_far_as_the_reasoning_text(server):
    inflated = chat_body("fine", usage={"prompt_tokens": 5, "completion_tokens": 10 ** 6,
                                        "completion_tokens_details": {"reasoning_tokens": 10 ** 6}})
    shown = chat_body("fine", usage={"prompt_tokens": 5, "completion_tokens": 8 + 11,
                                     "completion_tokens_details": {"reasoning_tokens": 11}})
    shown["choices"][0]["message"]["reasoning_content"] = "eleven char"  # 11 bytes: up to 11 tokens
    server.plan(ok(inflated), ok(shown))
    first, second = complete(server.base_url), complete(server.base_url)
    assert first.usage_status == "suspect" and first.usage.output_tokens == 8  # max_tokens, not 10^6
    assert second.usage_status == "reported" and second.usage.output_tokens == 19


def test_prompt_tokens_are_allowed_a_hidden_system_prompt_and_no_more(server):
    from harness.spend.budget import prompt_token_bound

    request = make_request()
    bound = prompt_token_bound(request)
    server.plan(ok(chat_body("a", prompt_tokens=bound + 500)), ok(chat_body("b", prompt_tokens=bound + 513)))
    first = complete(server.base_url, request=request)
    second = complete(server.base_url, request=request)
    assert first.usage_status == "reported" and first.usage.input_tokens == bound + 500
    assert second.usage_status == "suspect" and second.usage.input_tokens == bound  # twice the bound once passed


@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms"])
@pytest.mark.parametrize("code", [429, 503, 500])
def test_a_retry_after_that_is_not_a_finite_number_means_backoff_not_a_hang(server, header, code):
    server.plan(status(code, headers={header: "nan"}), status(code, headers={header: "inf"}), ok(chat_body("after")))
    started = time.monotonic()
    assert complete(server.base_url).text == "after"
    assert time.monotonic() - started < 10 and server.received == 3


def test_the_key_never_appears_in_an_error_even_when_the_server_echoes_it(server):
    echo = {"error": {"message": f"bad request; headers were Authorization: Bearer {KEY}"}}
    server.plan(status(400, body=echo), status(302, body={}, headers={"Location": f"http://evil.example/?k={KEY}"}))
    refused = expect_failed(server.base_url, "bad_request")
    redirected = expect_fatal(server.base_url)
    for err in (refused, redirected):
        assert KEY not in str(err) and "***" in str(err)


def test_a_compressed_bomb_is_refused_at_the_cap_without_inflating_it(server, monkeypatch):
    import gzip
    import resource

    bomb = gzip.compress(b" " * (256 << 20), 9)  # 256 MiB of spaces in ~250 KB
    server.plan(*[("raw", 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, bomb)] * 2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    err = expect_failed(server.base_url, "malformed", make_cfg(max_retries=1))
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "inflates past its cap" in str(err) and grew_mb < 100, grew_mb


def test_a_compressed_answer_within_the_cap_is_read(server):
    import gzip
    import json as json_

    server.plan(("raw", 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"},
                 gzip.compress(json_.dumps(chat_body("squeezed")).encode())))
    assert complete(server.base_url).text == "squeezed"


def test_broken_http_is_a_malformed_answer_not_an_unreachable_server(server):
    server.plan(("raw", 200, {"Content-Type": "application/json", "Content-Length": "5",
                              "Transfer-Encoding": "chunked"}, b"hello"), ok(chat_body("fine")))
    complete(server.base_url)  # warm: the server has answered once
    server.plan(*[("raw", 200, {"Content-Type": "application/json", "Content-Length": "5",
                                "Transfer-Encoding": "chunked"}, b"hello")] * 2)
    err = expect_failed(server.base_url, "malformed", make_cfg(max_retries=1))
    assert "broken HTTP" in str(err) and "cannot reach" not in str(err)


def test_a_server_that_never_reads_the_request_is_silence_within_request_timeout(server):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(listener.accept()[0]) for _ in range(4)], daemon=True).start()
    huge = make_request(messages=({"role": "user", "content": "x" * (64 << 20)},))  # more than the socket buffers
    started = time.monotonic()
    with pytest.raises(EndpointError):
        complete(f"http://127.0.0.1:{listener.getsockname()[1]}/v1",
                 make_cfg(max_retries=1, request_timeout_s=1.0, attempt_timeout_s=60.0), request=huge)
    assert time.monotonic() - started < 6  # two attempts of ~1 s, not the 60 s attempt deadline
    listener.close()
