"""Claude's event stream (model.stream=true on the native Messages API): the same message as a
non-streamed call, usage from message_start + message_delta, and time to first token."""

from __future__ import annotations

import pytest

from tests.anthropic_server import AnthropicServer, message_body, ok
from tests.test_anthropic_endpoint import KEY, KEY_ENV, complete, make_model

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def test_streamed_message_equals_the_plain_one_with_timing():
    body = message_body(content=[{"type": "thinking", "thinking": "hmm, let me see", "signature": "s"},
                                 {"type": "text", "text": "The answer is 4."}],
                        usage={"input_tokens": 12, "output_tokens": 9, "cache_creation_input_tokens": 0,
                               "cache_read_input_tokens": 0})
    with AnthropicServer() as server:
        server.stream_interval_s = 0.02
        server.plan(ok(body), ok(body))
        plain = complete(server.base_url, make_model())
        streamed = complete(server.base_url, make_model(stream=True))
        sent = server.bodies()[1]
    assert sent.get("stream") is True
    assert (streamed.text, streamed.reasoning, streamed.finish_reason) == (plain.text, plain.reasoning, plain.finish_reason)
    assert streamed.usage == plain.usage and streamed.usage_status == "reported"
    assert plain.ttft_s is None
    assert 0 < streamed.ttft_s < streamed.answer_ttft_s and streamed.tokens_per_s > 0
