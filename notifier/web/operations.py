"""For operators and their probes: liveness, readiness, and Prometheus metrics."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..deps import Rt
from ..doctor import readiness

router = APIRouter()


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(rt: Rt) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    from ..metrics import exposition  # prometheus_client: imported by the first scrape

    return Response(exposition(rt), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the database or the broker is down"}})
def readyz(request: Request, rt: Rt) -> JSONResponse:
    # The broker is checked when `create_app` was given a `broker_ping`.
    checks = readiness(rt, request.app.state.broker_ping)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
