"""The pages a patient's email link opens, over HTTP: in the patient's language, the answer
shown again when the link is opened again, the clinic's number to tap; and the stylesheets
they and the dashboard load from /static. (tests/test_screens.py looks at them in Chromium.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from notifier.links import make_token
from notifier.runtime import Runtime
from notifier.web import create_app
from tests.test_track import VISIT, book, confirmation


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def link(rt: Runtime, action: str, expires: timedelta = timedelta(hours=1)) -> str:
    token = make_token(rt.settings.secret_key or "", "apt-1", action, VISIT + expires)
    return f"/links/{token}"


def heading(page: str) -> str:
    found = re.search(r"<h1>(.*?)</h1>", page)
    assert found, page
    return found[1].replace("&#39;", "'")


def test_a_spanish_speaking_patient_gets_the_page_in_spanish(
    client: TestClient, rt: Runtime
) -> None:
    book(rt, language="es")
    page = client.get(link(rt, "confirm"))
    assert '<html lang="es">' in page.text
    assert heading(page.text) == "¿Confirma su cita?"
    assert "jueves 3 de diciembre a las 10:00" in page.text
    assert '<a href="tel:+17185550117">(718) 555-0117</a>' in page.text
    done = client.post(link(rt, "confirm"))
    assert heading(done.text) == "Gracias, su cita está confirmada."
    asked = client.get(link(rt, "reschedule"))
    assert heading(asked.text) == "¿Quiere otra hora?"


def test_a_confirmed_visit_s_link_says_so_when_opened_again(
    client: TestClient, rt: Runtime
) -> None:
    book(rt)
    client.post(link(rt, "confirm"))
    again = client.get(link(rt, "confirm"))
    assert heading(again.text) == "Thank you, you're confirmed."
    assert "<button" not in again.text
    assert "Thursday, December 3 at 10:00 AM" in again.text
    assert 'Call us at <a href="tel:+17185550117">(718) 555-0117</a>' in again.text
    assert confirmation(rt) == "confirmed"


def test_a_reschedule_link_opened_again_says_we_will_call(client: TestClient, rt: Runtime) -> None:
    book(rt)
    assert heading(client.get(link(rt, "reschedule")).text) == "Ask for a new time?"
    client.post(link(rt, "reschedule"))
    assert heading(client.get(link(rt, "reschedule")).text) == "Thank you, we'll call you."
    # Asked for another time, then happy with this one after all: the question, not an answer.
    assert heading(client.get(link(rt, "confirm")).text) == "Confirm your appointment?"


def test_a_language_without_pages_falls_back_to_english(client: TestClient, rt: Runtime) -> None:
    book(rt, language="fr")
    page = client.get(link(rt, "confirm"))
    assert '<html lang="en">' in page.text and heading(page.text) == "Confirm your appointment?"


def test_a_link_naming_no_readable_visit_speaks_the_browser_s_language(
    client: TestClient, rt: Runtime
) -> None:
    book(rt, language="es")
    mangled = link(rt, "confirm")[:-4] + "AAAA"
    spanish = {"Accept-Language": "es-US,es;q=0.9,en;q=0.8"}
    answer = client.get(mangled, headers=spanish)
    assert (answer.status_code, heading(answer.text)) == (400, "Este enlace no es válido.")
    # Whom to call, when the link cannot say which location: every location, each to tap.
    assert answer.text.count('href="tel:+1') == len(rt.clinic.locations)
    stale = client.get(link(rt, "confirm", expires=-timedelta(days=4)), headers=spanish)
    assert (stale.status_code, heading(stale.text)) == (410, "Este enlace ha caducado.")
    for header in ("fr-CA, de;q=0.5", "", "es" * 5000, ",,;;q=x,-", "ñ".encode("latin-1") * 99):
        answer = client.get(mangled, headers={"Accept-Language": header})
        assert (answer.status_code, heading(answer.text)) == (400, "This link is not valid.")


def test_the_pages_load_their_styles_from_static_files(client: TestClient, rt: Runtime) -> None:
    book(rt)
    page = client.get(link(rt, "confirm"))
    assert "<style" not in page.text and " style=" not in page.text
    found = re.search(r'<link rel="stylesheet" href="(/static/patient\.css\?v=\w+)">', page.text)
    assert found, page.text
    sheet = client.get(found[1])
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/css")
    login = client.get("/staff/login")
    assert re.search(r'href="/static/staff\.css\?v=\w+"', login.text)
    assert re.search(r'<script src="/static/staff\.js\?v=\w+" defer></script>', login.text)


@pytest.mark.parametrize(
    "path", ["/static/nothing.css", "/static/../pages/base.html", "/static/%2e%2e/pages/base.html"]
)
def test_static_serves_only_its_own_files(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_static_files_answer_only_reads(client: TestClient) -> None:
    refused = client.post("/static/staff.css")
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")
    assert client.head("/static/staff.css").status_code == 200
