"""Reads from the clinic's own FHIR server: the one way out to it, made from the settings.

An `id-only` subscription notification names an Appointment without carrying it; this reads the
Appointment, and the Patient it names, back with the bearer token the clinic gave us. The token
only ever goes to that server: a reference to any other host is refused, never followed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# Statuses after which asking again later may succeed: the sender should retry its notification.
TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}
MAX_RESOURCE_BYTES = 1024 * 1024


class FhirReadError(Exception):
    """A read that failed. `status` is what our own answer to the notifying server should be:
    503 when retrying may help, 502 when the clinic's server refused us, 422 when the resource
    is not there."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class FhirServer:
    base_url: str  # without the trailing slash
    token: str | None
    timeout: float

    def owns(self, url: str) -> bool:
        return url.startswith(self.base_url + "/")

    def read(self, kind: str, resource_id: str) -> dict[str, Any]:
        """GET [base]/kind/id as a JSON object, or FhirReadError saying why not."""
        url = f"{self.base_url}/{kind}/{resource_id}"
        headers = {"Accept": "application/fhir+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read(MAX_RESOURCE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise _refused(kind, resource_id, exc.code) from None
        except (OSError, TimeoutError) as exc:  # refused, reset, timed out, DNS
            silent = f"the FHIR server did not answer for {kind}/{resource_id}: {exc}"
            raise FhirReadError(silent, 503) from None
        return _resource(kind, resource_id, body)


def _refused(kind: str, resource_id: str, status: int) -> FhirReadError:
    named = f"{kind}/{resource_id}"
    if status in (404, 410):
        return FhirReadError(f"{named} is not on the FHIR server (HTTP {status})", 422)
    if status in (401, 403):
        return FhirReadError(
            f"the FHIR server refused us {named} (HTTP {status}): check NOTIFIER_FHIR_TOKEN",
            502,
        )
    if status in TRANSIENT_STATUSES:
        return FhirReadError(f"the FHIR server failed reading {named} (HTTP {status})", 503)
    return FhirReadError(f"the FHIR server answered HTTP {status} for {named}", 502)


def _resource(kind: str, resource_id: str, body: bytes) -> dict[str, Any]:
    named = f"{kind}/{resource_id}"
    if len(body) > MAX_RESOURCE_BYTES:
        raise FhirReadError(f"the FHIR server's {named} is larger than we read", 502)
    try:
        resource = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FhirReadError(f"the FHIR server's {named} is not JSON", 502) from None
    if not isinstance(resource, dict) or resource.get("resourceType") != kind:
        raise FhirReadError(f"the FHIR server answered {named} with something else", 502)
    return resource
