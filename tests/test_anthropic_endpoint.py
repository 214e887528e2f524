"""AnthropicEndpoint with the real anthropic SDK against a loopback fake of the Messages API
(tests/anthropic_server.py; no SDK or HTTP mocks): the request as the server receives it, usage with
prompt-cache reads and writes and its cost, thinking blocks, stop reasons, retries and errors that
name the fix without ever showing the key. Also the OpenAI reasoning parameters of the existing
OpenAI path (OpenAICompatEndpoint against tests/fault_server.py) and the configs composing."""

from __future__ import annotations

import asyncio
import traceback

import pytest
from anthropic.types import Message
from omegaconf import OmegaConf

from harness.endpoints.adapter import generation_params
from harness.config import GenerationConfig, ModelConfig, RunConfig
from harness.data import compose_config
from harness.endpoints.anthropic_native import AnthropicEndpoint, build_message_kwargs, parse_message
from harness.endpoints.base import ChatRequest, Completion, EndpointError, RequestFailed, Usage
from harness.endpoints.openai_compat import OpenAICompatEndpoint, parse_chat_completion
from harness.spend.pricing import request_cost_usd
from tests.anthropic_server import AnthropicServer, delay, error, message_body, ok
from tests.fault_server import FaultServer, chat_body, free_port
from tests.fault_server import ok as fault_ok

pytestmark = pytest.mark.timeout(60)

KEY_ENV = "ANTHROPIC_API_KEY"
KEY = "sk-ant-api03-SENTINEL-5f2c9e"
# The SDK waits this long (10 ms) before a retry instead of its 0.5-8 s exponential backoff.
FAST = {"retry-after-ms": "10"}


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-SENTINEL-77")


@pytest.fixture
def server():
    with AnthropicServer() as s:
        yield s


def make_model(**overrides) -> ModelConfig:
    generation = overrides.pop("generation", None) or GenerationConfig(temperature=0.0, max_tokens=1024)
    fields = dict(name="claude-test", model_id="claude-opus-4-7", provider="anthropic", api_key_env=KEY_ENV,
                  max_retries=2, concurrency=2, request_timeout_s=10.0, generation=generation)
    fields.update(overrides)
    return ModelConfig(**fields)


def make_request(model: ModelConfig, messages=None, stop=(), gen_kwargs=None) -> ChatRequest:
    """The request as EndpointLM builds it: params from generation_params."""
    messages = messages or ({"role": "user", "content": "What is 2+2?"},)
    return ChatRequest(tuple(messages), model.model_id, generation_params(model, gen_kwargs or {}), tuple(stop))


def run(endpoint, *requests: ChatRequest):
    async def go():
        try:
            return await asyncio.gather(*(endpoint.complete(r) for r in requests))
        finally:
            await endpoint.aclose()

    return asyncio.run(go())


def complete(base_url: str, model: ModelConfig, request: ChatRequest | None = None) -> Completion:
    return run(AnthropicEndpoint(model, base_url), request or make_request(model))[0]


def expect_error(base_url: str, model: ModelConfig, request: ChatRequest | None = None) -> EndpointError:
    with pytest.raises(EndpointError) as info:
        complete(base_url, model, request)
    return info.value


def sent_key(headers: dict[str, str]) -> str | None:
    """The credential as sent: x-api-key (the documented header) or Authorization: Bearer (anthropic
    SDK 2.x sends the API key this way)."""
    lower = {k.lower(): v for k, v in headers.items()}
    if "x-api-key" in lower:
        return lower["x-api-key"]
    auth = lower.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


def assert_no_key(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    for shown in (str(exc), repr(exc), text):
        assert KEY not in shown
    # Not chained to the SDK error, whose request holds the key in its headers.
    assert exc.__cause__ is None and exc.__context__ is None


# -- request shape -------------------------------------------------------------------------------

def test_request_as_the_server_receives_it(server):
    model = make_model(generation=GenerationConfig(temperature=0.0, top_p=0.9, seed=1234, max_tokens=512))
    messages = ({"role": "system", "content": "Answer tersely."},
                {"role": "user", "content": "Q: 1+1?"}, {"role": "assistant", "content": "A: 2"},
                {"role": "user", "content": "Q: 2+2?"})
    completion = complete(server.base_url, model,
                          make_request(model, messages, stop=("Question:", "\n\n", "", "</s>")))
    assert completion.text == "ok"
    (req,) = server.requests
    assert req["path"] == "/v1/messages"
    assert sent_key(req["headers"]) == KEY
    assert req["headers"]["anthropic-version"]
    assert req["json"] == {
        "model": "claude-opus-4-7",
        "max_tokens": 512,
        "system": "Answer tersely.",
        "messages": [{"role": "user", "content": "Q: 1+1?"}, {"role": "assistant", "content": "A: 2"},
                     {"role": "user", "content": "Q: 2+2?"}],
        # empty and whitespace-only stops are refused by the API: applied client-side only
        "stop_sequences": ["Question:", "</s>"],
        "temperature": 0.0,
        "top_p": 0.9,
        # no seed: the Messages API has none
    }


def test_task_max_gen_toks_is_max_tokens_when_the_model_sets_none(server):
    model = make_model(generation=GenerationConfig(temperature=None, max_tokens=None))
    complete(server.base_url, model, make_request(model, gen_kwargs={"max_gen_toks": 300}))
    body = server.bodies()[0]
    assert body["max_tokens"] == 300 and "temperature" not in body and "system" not in body


def test_budgeted_thinking_sends_the_thinking_block_and_no_temperature(server):
    model = make_model(generation=GenerationConfig(temperature=0.0, max_tokens=4096, thinking_budget_tokens=2048))
    complete(server.base_url, model)
    body = server.bodies()[0]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "temperature" not in body  # Anthropic rejects temperature with thinking
    assert body["max_tokens"] == 4096 and body["model"] == "claude-opus-4-7"


def test_model_thinking_true_asks_for_adaptive_thinking_with_effort(server):
    model = make_model(thinking=True, generation=GenerationConfig(temperature=0.0, max_tokens=8000,
                                                                   reasoning_effort="max"))
    complete(server.base_url, model)
    body = server.bodies()[0]
    # not generation_params' DeepSeek toggle {"type": "enabled"}, which Anthropic would reject
    assert body["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert body["output_config"] == {"effort": "max"}
    assert "temperature" not in body and "reasoning_effort" not in body


def test_model_thinking_false_sends_no_thinking_field(server):
    model = make_model(thinking=False)
    complete(server.base_url, model)
    assert "thinking" not in server.bodies()[0]


def test_extra_body_is_passed_through(server):
    model = make_model(generation=GenerationConfig(temperature=None, max_tokens=64,
                                                   extra_body={"top_k": 5, "metadata": {"user_id": "eval"}}))
    complete(server.base_url, model)
    body = server.bodies()[0]
    assert body["top_k"] == 5 and body["metadata"] == {"user_id": "eval"}


@pytest.mark.parametrize("generation, names", [
    (GenerationConfig(max_tokens=2000, thinking_budget_tokens=2000), "model.generation.thinking_budget_tokens"),
    (GenerationConfig(max_tokens=4000, thinking_budget_tokens=512), "model.generation.thinking_budget_tokens"),
    (GenerationConfig(max_tokens=100, reasoning_effort="minimal"), "model.generation.reasoning_effort"),
], ids=["budget-not-below-max-tokens", "budget-below-1024", "openai-only-effort"])
def test_settings_the_api_would_refuse_stop_before_any_request(server, generation, names):
    exc = expect_error(server.base_url, make_model(generation=generation))
    assert names in str(exc) and not isinstance(exc, RequestFailed)
    assert server.requests == []


def test_max_tokens_is_required():
    model = make_model()
    request = ChatRequest(({"role": "user", "content": "hi"},), model.model_id, {"temperature": 0.0})
    with pytest.raises(EndpointError, match=r"model\.generation\.max_tokens"):
        build_message_kwargs(model, request)


# -- responses -----------------------------------------------------------------------------------

# Documented usage with prompt caching: input_tokens is the part after the last cache breakpoint.
CACHED_USAGE = {
    "input_tokens": 100, "cache_read_input_tokens": 4000, "cache_creation_input_tokens": 1000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 500, "service_tier": "standard",
}


def test_cache_reads_and_writes_are_parsed_and_priced_at_the_configs_prices(server):
    server.plan(ok(message_body("4", usage=CACHED_USAGE)))
    model = make_model()  # a prompt long enough for 5,100 tokens (cached system text in real use)
    completion = complete(server.base_url, model, make_request(model, ({"role": "user", "content": "x" * 6000},)))
    assert completion.usage == Usage(input_tokens=5100, cached_input_tokens=4000, output_tokens=500,
                                     reasoning_tokens=0, cache_write_input_tokens=1000)
    assert completion.usage_reported
    import datetime as dt

    from harness.spend.price_book import schedule_for

    prices = schedule_for(OmegaConf.to_object(compose_config(["model=claude-opus-4.7"])).model.pricing)
    # By hand at the book's $5 in / $0.50 cache read / $6.25 cache write / $25 out per 1M tokens:
    # 100 * 5 + 4000 * 0.5 + 1000 * 6.25 + 500 * 25 = 500 + 2000 + 6250 + 12500 = 21250 micro-dollars.
    quote = prices.quote(completion.usage, dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc))
    assert quote.cost_usd == pytest.approx(0.02125)
    assert prices.quote(completion.usage, dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc), batch=True).cost_usd \
        == pytest.approx(0.02125 / 2)


def test_cache_writes_bill_at_input_price_without_a_write_price():
    from harness.config import PricingConfig

    usage = Usage(input_tokens=5100, cached_input_tokens=4000, output_tokens=0, cache_write_input_tokens=1000)
    assert request_cost_usd(usage, PricingConfig(input_per_mtok=5.0, cached_input_per_mtok=0.5)) == \
        pytest.approx((1100 * 5 + 4000 * 0.5) / 1e6)


def test_records_written_before_cache_writes_existed_still_load():
    old = {"text": "4", "reasoning": None, "finish_reason": "stop", "served_model": "m", "system_fingerprint": None,
           "latency_s": 0.5, "usage_reported": True,
           "usage": {"input_tokens": 10, "cached_input_tokens": 4, "output_tokens": 3, "reasoning_tokens": 1}}
    assert Completion.from_dict(old).usage == Usage(10, 4, 3, 1, 0)


THINKING_MESSAGE = message_body(content=[
    {"type": "thinking", "thinking": "2 and 2 make 4.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
    {"type": "text", "text": "The answer is "},
    {"type": "text", "text": "4."},
], stop_reason="end_turn", usage={"input_tokens": 20, "output_tokens": 90,
                                  "output_tokens_details": {"thinking_tokens": 70}})


@pytest.mark.parametrize("through_sdk", [False, True], ids=["raw", "sdk-model"])
def test_thinking_blocks_become_reasoning_and_text_blocks_the_text(through_sdk):
    body = Message.model_validate(THINKING_MESSAGE).model_dump() if through_sdk else THINKING_MESSAGE
    c = parse_message(body, latency_s=0.3)
    assert c.text == "The answer is 4."
    assert c.reasoning == "2 and 2 make 4.[redacted]"
    assert c.finish_reason == "stop" and c.served_model == "claude-opus-4-7" and c.latency_s == 0.3
    # output_tokens includes thinking; thinking_tokens, where the API reports it, is reasoning_tokens
    assert c.usage == Usage(20, 0, 90, 70, 0)
    assert c.system_fingerprint is None


def test_thinking_reaches_the_completion_over_http(server):
    server.plan(ok(THINKING_MESSAGE))
    c = complete(server.base_url, make_model(thinking=True))
    assert (c.text, c.reasoning) == ("The answer is 4.", "2 and 2 make 4.[redacted]")


def test_no_thinking_blocks_means_no_reasoning():
    c = parse_message(message_body("plain", usage={"input_tokens": 3, "output_tokens": 1}), 0)
    assert c.reasoning is None and c.usage == Usage(3, 0, 1, 0, 0)


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "refusal"),
    ("model_context_window_exceeded", "length"), ("pause_turn", "pause_turn"),  # the window is a token limit too
])
def test_stop_reason_mapping(stop_reason, finish):
    assert parse_message(message_body("x", stop_reason=stop_reason), 0).finish_reason == finish


def test_every_stop_is_applied_client_side():
    body = message_body("18\n\nQuestion: next", stop_reason="end_turn")
    assert parse_message(body, 0, stop=("\n\n", "Question:")).text == "18"


def test_missing_usage_is_flagged_not_invented():
    body = message_body("x")
    body["usage"] = None
    c = parse_message(body, 0)
    assert c.usage == Usage() and not c.usage_reported


# -- retries and errors --------------------------------------------------------------------------

def test_429_with_retry_after_then_success(server):
    server.plan(error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit",
                      headers=FAST), ok(message_body("done")))
    completion = complete(server.base_url, make_model())
    assert completion.text == "done"
    assert len(server.requests) == 2


def test_429_and_529_the_sdk_retries_still_lower_the_adaptive_limit(server):
    server.plan(error(429, "rate_limit_error", "slow down", headers=FAST), ok(message_body("a")))
    endpoint = AnthropicEndpoint(make_model(concurrency=8), server.base_url)
    endpoint.limiter.cooldown_s = 0.0  # count each slow-down answer
    run(endpoint, make_request(make_model()))
    assert endpoint.limiter.limit == 4 and endpoint.limiter.rate_limited == 1
    assert endpoint.limiter.stats()["min_limit"] == 4


def test_529_overloaded_is_waited_out_for_the_patience_then_a_request_failure(server):
    server.plan(*[error(529, "overloaded_error", "Overloaded", headers=FAST)] * 200)
    exc = expect_error(server.base_url, make_model(max_retries=2, rate_limit_patience_s=0.5))
    assert isinstance(exc, RequestFailed) and exc.kind == "overloaded" and exc.status == 529
    assert "model.rate_limit_patience_s=0.5" in str(exc)
    assert len(server.requests) > 3  # a slow-down is not a failure: asked again past max_retries
    assert_no_key(exc)


def test_a_request_waiting_out_a_429_holds_no_slot(server):
    """Concurrency 1: the first request's 429 asks for a 1 s wait; the second is sent during that wait
    (the SDK's own retries waited inside the slot, so the second waited for the first's retry)."""
    server.plan(error(429, "rate_limit_error", headers={"retry-after": "1"}), ok(message_body("second")),
                ok(message_body("first")))
    model = make_model(concurrency=1)
    first, second = run(AnthropicEndpoint(model, server.base_url), make_request(model), make_request(model))
    assert (first.text, second.text) == ("first", "second")
    times = [r["t"] for r in server.requests]
    assert times[1] - times[0] < 0.5 and times[2] - times[0] >= 0.9


@pytest.mark.parametrize("status, error_type, kind", [(500, "api_error", "server_error")])
def test_retryable_errors_that_outlast_the_retries(server, status, error_type, kind):
    server.plan(*[error(status, error_type, headers=FAST)] * 2)
    exc = expect_error(server.base_url, make_model(max_retries=1))
    assert isinstance(exc, RequestFailed) and (exc.kind, exc.status) == (kind, status)
    assert len(server.requests) == 2


def test_401_is_fatal_names_the_env_var_and_never_shows_the_key(server):
    server.plan(error(401, "authentication_error", "invalid x-api-key"))
    exc = expect_error(server.base_url, make_model())
    assert not isinstance(exc, RequestFailed)
    assert KEY_ENV in str(exc) and "401" in str(exc)
    assert len(server.requests) == 1  # not retried
    assert_no_key(exc)


def test_a_key_echoed_by_the_server_is_scrubbed(server):
    server.plan(error(403, "permission_error", f"key {KEY} may not use this model"))
    exc = expect_error(server.base_url, make_model())
    assert not isinstance(exc, RequestFailed) and "claude-opus-4-7" in str(exc)
    assert_no_key(exc)


def test_404_names_the_model_id_and_config_key(server):
    server.plan(error(404, "not_found_error", "model: claude-opus-4-77"))
    exc = expect_error(server.base_url, make_model(model_id="claude-opus-4-77"))
    assert not isinstance(exc, RequestFailed)
    assert "claude-opus-4-77" in str(exc) and "model.model_id" in str(exc)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status, error_type, message", [
    (400, "invalid_request_error", "prompt is too long: 212000 tokens > 200000 maximum"),
    (400, "invalid_request_error", "messages: text content blocks must be non-empty"),
    (413, "request_too_large", "Request exceeds the maximum allowed number of bytes."),
    (422, "invalid_request_error", "unprocessable"),
])
def test_this_requests_fault_is_a_bad_request_failure(server, status, error_type, message):
    server.plan(error(status, error_type, message))
    exc = expect_error(server.base_url, make_model())
    assert isinstance(exc, RequestFailed) and (exc.kind, exc.status) == ("bad_request", status)
    assert message in str(exc)
    assert len(server.requests) == 1  # not retried


@pytest.mark.parametrize("message", [
    "`temperature` is deprecated for this model.",
    "thinking.type.enabled is not supported for this model. Use thinking.type.adaptive instead.",
    "Your credit balance is too low to access the Anthropic API.",
])
def test_a_400_about_the_configuration_stops_the_run(server, message):
    server.plan(error(400, "invalid_request_error", message))
    exc = expect_error(server.base_url, make_model())
    assert not isinstance(exc, RequestFailed)
    assert message in str(exc) and "conf/model/claude-test.yaml" in str(exc)


def test_spend_limit_429_stops_the_run(server):
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "spend limit reached",
                                       "details": {"error_code": "enforced_spend_limit_reached"}}}
    server.plan(("status", 429, body, {"x-should-retry": "false"}))
    exc = expect_error(server.base_url, make_model())
    assert not isinstance(exc, RequestFailed) and "spend limit" in str(exc)


def test_unreachable_server_is_a_connection_failure():
    exc = expect_error(f"http://127.0.0.1:{free_port()}", make_model(max_retries=0))
    assert isinstance(exc, RequestFailed) and exc.kind == "connection" and exc.status is None
    assert_no_key(exc)


def test_no_answer_within_the_timeout_is_a_timeout_failure(server):
    server.plan(delay(2.0))
    exc = expect_error(server.base_url, make_model(max_retries=0, request_timeout_s=0.3))
    assert isinstance(exc, RequestFailed) and exc.kind == "timeout"
    assert "model.request_timeout_s" in str(exc)


def test_at_most_concurrency_requests_in_flight(server):
    server.plan(*[delay(0.2)] * 6)
    model = make_model(concurrency=2)
    completions = run(AnthropicEndpoint(model, server.base_url), *[make_request(model)] * 6)
    assert len(completions) == 6 and server.max_in_flight == 2


def test_endpoint_identity_and_base_url():
    model = make_model(base_url="https://api.anthropic.com/v1/")
    endpoint = AnthropicEndpoint(model, None)
    # The SDK appends /v1/messages: a compatibility-layer URL is trimmed back to the API root.
    assert endpoint.base_url == endpoint.identity == "https://api.anthropic.com"
    assert AnthropicEndpoint(model, "http://127.0.0.1:9", identity="x").identity == "x"


def test_a_missing_key_names_the_env_var(monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(EndpointError, match=f"export {KEY_ENV}="):
        AnthropicEndpoint(make_model(), None)


# -- configs -------------------------------------------------------------------------------------

def test_claude_config_composes_and_validates():
    cfg = OmegaConf.to_object(compose_config(["model=claude-opus-4.7"]))
    assert isinstance(cfg, RunConfig)
    m = cfg.model
    assert (m.provider, m.base_url, m.model_id, m.api_key_env) == (
        "anthropic", "https://api.anthropic.com", "claude-opus-4-7", "ANTHROPIC_API_KEY")
    assert m.generation.temperature is None  # Opus 4.7 rejects temperature
    import datetime as dt

    from harness.spend.price_book import schedule_for

    p = schedule_for(m.pricing).period_at(dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)).rates
    assert p.cached_input_per_mtok == pytest.approx(0.1 * p.input_per_mtok)  # cache reads 0.1x
    assert p.cache_write_per_mtok == pytest.approx(1.25 * p.input_per_mtok)  # 5-minute cache writes 1.25x
    # and the request it makes passes the endpoint's own checks
    kwargs = build_message_kwargs(m, make_request(m))
    assert kwargs["max_tokens"] == 16384 and "extra_body" not in kwargs


def test_openai_compat_variant_is_kept():
    m = OmegaConf.to_object(compose_config(["model=claude-opus-4.7-openai-compat"])).model
    assert (m.name, m.provider, m.base_url) == (
        "claude-opus-4.7-openai-compat", "anthropic_openai_compat", "https://api.anthropic.com/v1/")


# -- OpenAI reasoning parameters on the existing OpenAI path ------------------------------------

def _openai_body(model: ModelConfig, request: ChatRequest, answer: dict | None = None):
    with FaultServer() as fault:
        fault.plan(fault_ok(answer or chat_body("4")))
        completion = run(OpenAICompatEndpoint(model, fault.base_url), request)[0]
        (body,) = fault.bodies()
    return body, completion


def test_openai_reasoning_request_sends_max_completion_tokens_and_reasoning_effort():
    model = OmegaConf.to_object(compose_config(["model=gpt-5.5", "model.generation.reasoning_effort=high"])).model
    request = make_request(model, stop=("Question:",))
    body, _ = _openai_body(model, request)
    assert body["model"] == "gpt-5.5"
    assert body["max_completion_tokens"] == 32768 and "max_tokens" not in body
    assert body["reasoning_effort"] == "high"
    assert "temperature" not in body  # null in the config: not sent (reasoning models reject it)
    assert "stop" not in body  # max_stop_sequences: 0, applied client-side


def test_openai_compat_provider_keeps_max_tokens():
    model = make_model(provider="openai_compat", api_key_env="OPENAI_API_KEY", model_id="m",
                       generation=GenerationConfig(temperature=0.0, max_tokens=64))
    body, _ = _openai_body(model, make_request(model))
    assert body["max_tokens"] == 64 and "max_completion_tokens" not in body and body["temperature"] == 0.0


# OpenAI chat completion object of a reasoning model (platform.openai.com/docs/api-reference/chat/object):
# reasoning_tokens are part of completion_tokens, cached_tokens part of prompt_tokens.
OPENAI_REASONING = {
    "id": "chatcmpl-abc", "object": "chat.completion", "created": 1_776_000_000, "model": "gpt-5.5-2026-04-23",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "The answer is 4.", "refusal": None,
                                         "annotations": []}, "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 1500, "completion_tokens": 900, "total_tokens": 2400,
              "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 768, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    "service_tier": "default", "system_fingerprint": None,
}


def test_openai_reasoning_usage_is_parsed():
    c = parse_chat_completion(OPENAI_REASONING, latency_s=1.0)
    assert c.usage == Usage(input_tokens=1500, cached_input_tokens=1024, output_tokens=900, reasoning_tokens=768)
    assert c.text == "The answer is 4." and c.reasoning is None and c.finish_reason == "stop"


def test_openai_reasoning_usage_survives_the_sdk_over_http():
    model = OmegaConf.to_object(compose_config(["model=gpt-5.5"])).model
    long_prompt = make_request(model, ({"role": "user", "content": "x" * 2000},))  # room for 1,500 tokens
    _, c = _openai_body(model, long_prompt, OPENAI_REASONING)
    assert c.usage == Usage(1500, 1024, 900, 768, 0)
    assert c.served_model == "gpt-5.5-2026-04-23"
