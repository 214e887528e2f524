"""The collector's settings during the request phase (harness.common.gc_policy): raised young
threshold and start-up frozen while requests run, Python's own settings before and after."""

from __future__ import annotations

import gc

from lm_eval.api.instance import Instance

from harness.common.exchange import ChatRequest, Completion, Usage
from harness.common.gc_policy import YOUNG_THRESHOLD, requests_phase
from harness.config import ModelConfig
from harness.endpoints.adapter import EndpointLM


class RecordingEndpoint:
    """An Endpoint that answers at once and notes the collector's settings at each request."""

    identity = "recording"

    def __init__(self):
        self.seen: list[tuple[tuple[int, int, int], int]] = []

    async def complete(self, request: ChatRequest, doc_key: str | None = None) -> Completion:
        self.seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return Completion(text="#### 4", reasoning=None, finish_reason="stop", usage=Usage(5, 2),
                          served_model="m", system_fingerprint=None, latency_s=0.01)

    async def aclose(self) -> None:
        pass


def test_the_request_phase_runs_with_the_collector_tuned_and_restores_it():
    before = gc.get_threshold()
    assert before[0] < YOUNG_THRESHOLD and gc.get_freeze_count() == 0
    endpoint = RecordingEndpoint()
    lm = EndpointLM(endpoint=endpoint, model=ModelConfig(name="m", model_id="m"), cache=None, show_progress=False)
    messages = lm.apply_chat_template([{"role": "user", "content": "What is 2 plus 2?"}])
    instances = [Instance(request_type="generate_until", doc={"q": i}, arguments=(messages, {"until": ["Q:"]}),
                          idx=0, metadata=("t", i, 1)) for i in range(3)]
    assert lm.generate_until(instances) == ["#### 4"] * 3
    assert len(endpoint.seen) == 3
    for threshold, frozen in endpoint.seen:
        assert threshold == (YOUNG_THRESHOLD, *before[1:])
        assert frozen > 1000  # start-up's objects (modules, configs) are out of the full collections' walk
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_collector_switched_off_stays_off_and_an_error_restores_settings():
    before = gc.get_threshold()
    try:
        gc.set_threshold(0)
        with requests_phase():
            assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)
    try:
        with requests_phase():
            raise KeyError("boom")
    except KeyError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
