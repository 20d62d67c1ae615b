"""The HTTP door (FastAPI): booking events in, appointment state out, health for operators.

One module per area, each an `APIRouter` of plain functions that take what they need through
`Depends` (`deps.Rt`, `deps.Db`, `auth.Caller`):

- `api`: `/v1/events`, `/v1/appointments/…`, `/v1/stats`, for the practice's systems;
- `webhooks`: `/twilio/*`, Twilio's incoming texts and delivery receipts;
- `link_pages`: `/links/*`, the confirm and reschedule pages a patient's link opens;
- `operations`: `/healthz`, `/readyz`, `/metrics`;
- `app`: `create_app`, which mounts these, the integrations' and the staff dashboard's routes.
"""

from .app import create_app

__all__ = ["create_app"]
