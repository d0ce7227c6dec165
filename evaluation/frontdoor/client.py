"""The service's HTTP API (CONTRACT.md §4) as an operator's script calls it: bearer token, JSON, cursors.

Each method is one public surface. A surface that answers 404 or 405 is missing from the service
under test and raises `SurfaceMissing` naming it; the evaluation never works around one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

import httpx

from evaluation.frontdoor.errors import EvaluationError, SurfaceMissing

JOBS_HOUSEHOLD_DAYS = "POST /api/v1/jobs/household-days"
PIPELINE = "GET /api/v1/pipeline"
PAGE = 1000  # the API's largest page
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text: the value per metric name, labelled series summed."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if m is None:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out[m.group(1)] = out.get(m.group(1), 0.0) + value
    return out


class Api:
    """A synchronous client of one running service."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s, trust_env=False
        )

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, surface: str, **kw: Any) -> httpx.Response:
        try:
            res = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise EvaluationError(f"{surface}: no answer from {self.base_url}: {exc!r}") from None
        if res.status_code in (404, 405) and res.headers.get("content-type", "").startswith("application/json"):
            body = res.json()
            if body in ({"detail": "Not Found"}, {"detail": "Method Not Allowed"}):
                raise SurfaceMissing(surface, f"{self.base_url}{path} answered {res.status_code} {body['detail']}")
        return res

    def _json(self, method: str, path: str, surface: str, **kw: Any) -> Any:
        res = self._request(method, path, surface, **kw)
        if res.status_code >= 400:
            raise EvaluationError(f"{surface} answered {res.status_code}: {res.text[:2000]}")
        return res.json()

    # health and progress

    def health(self) -> dict[str, Any] | None:
        """GET /api/v1/health, or None while the service does not answer yet."""
        try:
            res = self._http.get("/api/v1/health", timeout=5.0)
        except httpx.HTTPError:
            return None
        if res.status_code != 200:
            return None
        body: dict[str, Any] = res.json()
        return body

    def wait_healthy(self, deadline_s: float, alive: Any = None) -> dict[str, Any]:
        """Poll GET /api/v1/health until it says ok; `alive()` raises if the process died meanwhile."""
        end = time.monotonic() + deadline_s
        last: dict[str, Any] | None = None
        while time.monotonic() < end:
            if alive is not None:
                alive()
            last = self.health()
            if last is not None and last.get("status") == "ok":
                return last
            time.sleep(0.5)
        raise EvaluationError(f"GET /api/v1/health did not answer ok within {deadline_s:.0f} s (last: {last})")

    def openapi_paths(self) -> set[str] | None:
        """The paths the service documents (GET /api/openapi.json), or None if it publishes no document."""
        try:
            res = self._http.get("/api/openapi.json")
        except httpx.HTTPError:
            return None
        if res.status_code != 200:
            return None
        return set(res.json().get("paths", {}))

    def wait_receiving(self, deadline_s: float = 60.0, alive: Any = None) -> bool:
        """Until the service's collector takes MQTT messages (`whistle_collector_mqtt_connected` in /metrics: with
        a broker in front, a QoS 1 message published before the collector's subscription exists is dropped by the
        broker). False when the gauge never said so within `deadline_s` (a service that does not report it)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if alive is not None:
                alive()
            if self.metrics().get("whistle_collector_mqtt_connected", 0.0) >= 1:
                return True
            time.sleep(0.5)
        return False

    def metrics(self) -> dict[str, float]:
        """GET /metrics."""
        res = self._request("GET", "/metrics", "GET /metrics")
        if res.status_code != 200:
            raise EvaluationError(f"GET /metrics answered {res.status_code}")
        return parse_metrics(res.text)

    def pipeline(self) -> dict[str, Any]:
        """GET /api/v1/pipeline: consumer lags, readings stored, dead letters (SurfaceMissing if absent)."""
        body: dict[str, Any] = self._json("GET", "/api/v1/pipeline", PIPELINE)
        return body

    # the registry, absences, jobs

    def post_registry(self, registry: Mapping[str, Any]) -> dict[str, Any]:
        """POST /api/v1/registry: counts upserted."""
        body: dict[str, Any] = self._json("POST", "/api/v1/registry", "POST /api/v1/registry", json=registry)
        return body

    def post_absence(self, household_id: str, *, start: str, end: str, note: str) -> dict[str, Any]:
        """POST /api/v1/households/{id}/absences."""
        body: dict[str, Any] = self._json(
            "POST",
            f"/api/v1/households/{household_id}/absences",
            "POST /api/v1/households/{id}/absences",
            json={"start": start, "end": end, "note": note},
        )
        return body

    def run_household_days(self, first: date, last: date) -> dict[str, Any]:
        """POST /api/v1/jobs/household-days for the local days first..last."""
        body: dict[str, Any] = self._json(
            "POST",
            "/api/v1/jobs/household-days",
            JOBS_HOUSEHOLD_DAYS,
            json={"from": first.isoformat(), "to": last.isoformat()},
            timeout=1800.0,
        )
        return body

    # reading back

    def _pages(self, path: str, surface: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        for _ in range(100_000):  # bounded: 100 M items
            query = {**params, "limit": PAGE, **({"cursor": cursor} if cursor else {})}
            page = self._json("GET", path, surface, params=query)
            yield from page["items"]
            cursor = page.get("next")
            if not cursor:
                return
        raise EvaluationError(f"{surface}: pagination did not end")

    def alarms_page(self, *, limit: int) -> list[dict[str, Any]]:
        """The newest alarms, one page."""
        page = self._json("GET", "/api/v1/alarms", "GET /api/v1/alarms", params={"limit": limit})
        items: list[dict[str, Any]] = page["items"]
        return items

    def alarms(self, **filters: str) -> list[dict[str, Any]]:
        """Every alarm (GET /api/v1/alarms, all pages)."""
        return list(self._pages("/api/v1/alarms", "GET /api/v1/alarms", filters))

    def tickets(self, **filters: str) -> list[dict[str, Any]]:
        """Every ticket (GET /api/v1/tickets, all pages)."""
        return list(self._pages("/api/v1/tickets", "GET /api/v1/tickets", filters))

    def usage(self, device_id: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """GET /api/v1/devices/{id}/usage: a meter's consumption per interval."""
        body: list[dict[str, Any]] = self._json(
            "GET",
            f"/api/v1/devices/{device_id}/usage",
            "GET /api/v1/devices/{id}/usage",
            params={"since": since.isoformat(), "until": until.isoformat()},
        )
        return body
