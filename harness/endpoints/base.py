"""The Endpoint protocol and the errors an endpoint raises (the records it exchanges are in
harness.common.exchange, where every later stage can reach them).
"""

from __future__ import annotations

from typing import Protocol

from harness.common.exchange import ChatRequest, Completion, Usage

__all__ = ["ChatRequest", "Completion", "Endpoint", "EndpointError", "RequestFailed", "Usage"]


class EndpointError(RuntimeError):
    """A failure the user must act on (bad key, no balance, unknown model, unreachable URL): the run stops."""


class RequestFailed(EndpointError):
    """One request failed after its retries for a reason that is not the configuration's (rate limit
    or server errors that outlasted the retries, a timeout, a malformed or empty answer, a prompt the
    server refuses): recorded as that sample's error, the run goes on, and a re-run retries it."""

    def __init__(self, message: str, *, kind: str, status: int | None = None):
        super().__init__(message)
        self.kind = kind  # short machine-readable cause: "rate_limit", "server_error", "timeout", ...
        self.status = status


class Endpoint(Protocol):
    """Sends one chat request and returns its completion; retries are the endpoint's business."""

    identity: str

    async def complete(self, request: ChatRequest, doc_key: str | None = None) -> Completion:
        """`doc_key` names the document the request is for; only a replay endpoint needs it."""
        ...

    async def aclose(self) -> None: ...
