"""How an HTTP call to a provider failed, in SendError's terms."""

from __future__ import annotations

import requests

from .. import SendError

# What an HTTP provider call can fail with before or while its answer comes back.
CALL_FAILED = (requests.Timeout, requests.ConnectionError)


def call_failed(exc: requests.RequestException, provider: str) -> SendError:
    """Nothing left yet (no connection, TLS refused): retry. It left and no answer came back
    (a timeout, a connection dropped mid-answer): the provider may have taken it."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return SendError("transient", f"could not reach {provider}: {exc}")
    if isinstance(exc, requests.Timeout):
        return SendError("unknown", f"{provider} did not answer in time: {exc}")
    refused = "NewConnectionError" in repr(exc) or "Connection refused" in str(exc)
    if refused:
        return SendError("transient", f"could not reach {provider}: {exc}")
    return SendError("unknown", f"connection to {provider} lost: {exc}")
