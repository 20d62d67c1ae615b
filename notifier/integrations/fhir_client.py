"""Reads from the clinic's own FHIR server: the one way out to it, made from the settings.

An `id-only` subscription notification names an Appointment without carrying it; this reads the
Appointment, and the Patient it names, back with the bearer token the clinic gave us. The token
only ever goes to that server: a reference to any other host is refused, never followed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
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


class VersionConflict(Exception):
    """The server's resource is no longer the version we read (412 to our `If-Match`)."""


@dataclass(frozen=True)
class FhirServer:
    base_url: str  # without the trailing slash
    token: str | None
    timeout: float

    def owns(self, url: str) -> bool:
        return url.startswith(self.base_url + "/")

    def read(self, kind: str, resource_id: str) -> dict[str, Any]:
        """GET [base]/kind/id as a JSON object, or FhirReadError saying why not."""
        return self.read_versioned(kind, resource_id)[0]

    def read_versioned(self, kind: str, resource_id: str) -> tuple[dict[str, Any], str | None]:
        """The resource and its version as an `If-Match` wants it: the ETag the server gave,
        else `W/"<meta.versionId>"`, else None (a server that keeps no versions)."""
        request = urllib.request.Request(self._url(kind, resource_id), headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read(MAX_RESOURCE_BYTES + 1)
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as exc:
            raise _refused(kind, resource_id, exc.code) from None
        except (OSError, TimeoutError) as exc:  # refused, reset, timed out, DNS
            silent = f"the FHIR server did not answer for {kind}/{resource_id}: {exc}"
            raise FhirReadError(silent, 503) from None
        resource = _resource(kind, resource_id, body)
        version = (resource.get("meta") or {}).get("versionId")
        return resource, etag or (f'W/"{version}"' if version else None)

    def update(self, resource: dict[str, Any], version: str | None) -> None:
        """PUT the resource back, only over `version` (`If-Match`): VersionConflict on a 412."""
        kind, resource_id = resource["resourceType"], resource["id"]
        headers = {**self._headers(), "Content-Type": "application/fhir+json"}
        if version:
            headers["If-Match"] = version
        data = json.dumps(resource).encode()
        request = urllib.request.Request(
            self._url(kind, resource_id), data=data, headers=headers, method="PUT"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(MAX_RESOURCE_BYTES)
        except urllib.error.HTTPError as exc:
            if exc.code == 412:
                raise VersionConflict(f"{kind}/{resource_id}") from None
            raise _refused(kind, resource_id, exc.code) from None
        except (OSError, TimeoutError) as exc:
            silent = f"the FHIR server did not answer our write of {kind}/{resource_id}: {exc}"
            raise FhirReadError(silent, 503) from None

    def _url(self, kind: str, resource_id: str) -> str:
        return f"{self.base_url}/{kind}/{urllib.parse.quote(resource_id, safe='')}"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/fhir+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


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
