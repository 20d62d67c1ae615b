"""The admins' webhooks page: endpoints added and removed, dead letters sent again."""

from __future__ import annotations

from notifier import hooks
from notifier.models import WebhookDelivery
from notifier.runtime import Runtime
from notifier.store import webhooks
from notifier.web import create_app
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_roles import BEN, signed_in, two_accounts
from tests.test_staff_web import AMY, csrf, flash

PAGE = "/staff/admin/webhooks"


def test_an_admin_adds_an_endpoint_sees_its_secret_once_and_sends_a_dead_letter_again(
    rt: Runtime,
) -> None:
    two_accounts(rt)
    admin = signed_in(create_app(rt), AMY)
    page = admin.get(PAGE)
    assert page.status_code == 200 and "No endpoints" in page.text
    with WebhookReceiver(hooks.new_secret()) as receiver:
        form = {"csrf": csrf(page), "url": receiver.url, "events": ["message.failed"]}
        added = admin.post(PAGE, data=form)
        secret = added.text.split("shown this once")[1].split("<code>")[1].split("</code>")[0]
        assert secret.startswith("whsec_") and receiver.url in added.text
        assert secret not in admin.get(PAGE).text  # once
        receiver.verifier = WebhookReceiver(secret).verifier
        receiver.failing = lambda: True
        with rt.sessions() as session:
            hooks.emit(session, "message.failed", {"message_id": 1}, rt.clock())
            hooks.emit(session, "patient.opted_in", {"patient_ids": ["p"]}, rt.clock())
            session.commit()
            [row] = session.query(WebhookDelivery).all()  # only the event it asked for
            webhooks.claim(session, rt.clock(), rt.clock(), 1)
            webhooks.failed(session, row.id, 1, None, "HTTP 500")
            session.commit()
        page = admin.get(PAGE)
        assert "Dead letters" in page.text and "HTTP 500" in page.text
        receiver.failing = lambda: False
        again = admin.post(f"{PAGE}/dead/{row.id}/redeliver", data={"csrf": csrf(page)})
        assert "Sent again" in flash(again)
        hooks.deliver_due(rt)
        assert receiver.types() == ["message.failed"]
        assert "No dead letters" in admin.get(PAGE).text
        removed = admin.post(f"{PAGE}/1/remove", data={"csrf": csrf(page)})
        assert "Removed" in flash(removed) and "No endpoints" in removed.text


def test_a_bad_url_is_refused_with_a_reason_and_staff_cannot_open_the_page(
    rt: Runtime,
) -> None:
    two_accounts(rt)
    app = create_app(rt)
    admin = signed_in(app, AMY)
    page = admin.get(PAGE)
    refused = admin.post(PAGE, data={"csrf": csrf(page), "url": "javascript:alert(1)"})
    assert refused.status_code == 200 and "not an http(s) URL" in flash(refused)
    assert signed_in(app, BEN).get(PAGE).status_code == 403
