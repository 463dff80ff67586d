"""One language per answer: every admin endpoint that answers with readable text speaks the
language `Accept-Language` prefers (de or en), else the connection's `locale`, against the Graph
sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.world import MakeWorld, World

ORG = "f6LanguageOrganisation0000000000"
MAX = "max@contoso.example"
MAX_ID = "brMax000000000000000000000000000"
CONNECTION_URL = f"/api/v1/connections/{ORG}"
EMPLOYEE_URL = f"{CONNECTION_URL}/employees/{MAX_ID}"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GERMAN = {**ADMIN, "Accept-Language": "de-DE,de;q=0.9"}
ENGLISH = {**ADMIN, "Accept-Language": "en-GB, de;q=0.5"}


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    """A German connection (no public URL: change notifications are off) and Max's mailbox."""
    async with make_world(World, mailboxes=[MAX]) as built:
        body = {
            "tenant": built.tenant_id,
            "client_id": built.client_id,
            "client_secret": built.secret,
            "locale": "de",
        }
        created = await built.http.put(CONNECTION_URL, json=body, headers=ADMIN)
        assert created.status_code == 201, created.text
        yield built


async def _employ(world: World, headers: dict[str, str]) -> httpx.Response:
    response = await world.http.put(EMPLOYEE_URL, json={"mailbox": MAX}, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response


def _language(response: httpx.Response) -> str:
    assert response.headers["vary"] == "Accept-Language"
    return response.headers["content-language"]


async def test_employee_put_get_and_list_answer_in_the_asked_language(world: World) -> None:
    english = await _employ(world, ENGLISH)
    assert _language(english) == "en"
    assert english.json()["mailbox_check"]["message"] == (
        f"The calendar of mailbox {MAX} is accessible to the app."
    )
    german = await _employ(world, ADMIN)  # no header: the connection's language
    assert _language(german) == "de"
    assert german.json()["mailbox_check"]["message"] == (
        f"Der Kalender des Postfachs {MAX} ist für die App erreichbar."
    )

    off = {
        "de": f"Änderungsbenachrichtigungen für {MAX} sind ausgeschaltet",
        "en": f"Change notifications for {MAX} are off",
    }
    for headers, locale in ((GERMAN, "de"), (ENGLISH, "en"), (ADMIN, "de")):
        got = await world.http.get(EMPLOYEE_URL, headers=headers)
        assert _language(got) == locale
        assert got.json()["subscription"]["message"].startswith(off[locale])
        listed = await world.http.get(f"{CONNECTION_URL}/employees", headers=headers)
        assert listed.json()[0]["subscription"]["message"].startswith(off[locale])


async def test_a_stored_error_is_told_again_in_the_asked_language(world: World) -> None:
    world.control.block(world.client_id, MAX)
    english = await _employ(world, ENGLISH)
    body = english.json()
    assert body["mailbox_check"]["code"] == "access_policy_blocked"
    english_text = (
        f"An Exchange Online application access policy denies the app access to mailbox {MAX}. "
        "Add the mailbox to the policy."
    )
    assert body["mailbox_check"]["message"] == english_text
    assert body["last_error_message"] == english_text

    # Stored in the connection's language, whatever the request asked for.
    stored = await world.http.get(EMPLOYEE_URL, headers=ADMIN)
    german_text = stored.json()["last_error_message"]
    assert german_text.startswith("Eine Anwendungszugriffsrichtlinie in Exchange Online verweigert")
    assert MAX in german_text
    told = await world.http.get(EMPLOYEE_URL, headers=ENGLISH)
    assert told.json()["last_error_message"] == english_text
    assert (await world.http.get(EMPLOYEE_URL, headers=GERMAN)).json()[
        "last_error_message"
    ] == german_text


async def test_resync_and_removal_answer_in_the_asked_language(world: World) -> None:
    await _employ(world, ADMIN)
    german = await world.http.post(f"{EMPLOYEE_URL}/resync", headers=GERMAN)
    assert german.status_code == 202, german.text
    assert _language(german) == "de"
    assert german.json()["message"].startswith(f"Die Termine von {MAX_ID} werden")
    english = await world.http.post(f"{EMPLOYEE_URL}/resync", headers=ENGLISH)
    assert _language(english) == "en"
    assert english.json()["message"] == f"A resync of {MAX_ID} is already waiting to run."

    removed = await world.http.delete(
        EMPLOYEE_URL, params={"remove_events": "true"}, headers=ENGLISH
    )
    assert removed.status_code == 200, removed.text
    assert _language(removed) == "en"
    assert removed.json()["message"] == (
        f"The calendar of {MAX} holds no events calbridge created for {MAX_ID}."
    )


async def test_verify_and_a_refused_secret_answer_in_the_asked_language(world: World) -> None:
    verify = f"{CONNECTION_URL}/verify"
    texts: dict[str, Any] = {}
    for headers, locale in ((GERMAN, "de"), (ENGLISH, "en")):
        response = await world.http.post(verify, json={"mailbox": MAX}, headers=headers)
        assert _language(response) == locale
        texts[locale] = [check["message"] for check in response.json()["checks"]]
    assert texts["de"][1] == f"Der Kalender des Postfachs {MAX} ist für die App erreichbar."
    assert texts["en"][1] == f"The calendar of mailbox {MAX} is accessible to the app."

    wrong = {
        "tenant": world.tenant_id,
        "client_id": world.client_id,
        "client_secret": "Xy48Q~not-the-right-secret-0123456789ab",
    }
    details = {}
    for headers, locale in ((GERMAN, "de"), (ENGLISH, "en")):
        refused = await world.http.put(CONNECTION_URL, json=wrong, headers=headers)
        assert refused.status_code == 422, refused.text
        details[locale] = refused.json()["detail"]
    assert details["de"].startswith("Der geheime Clientschlüssel der App-Registrierung ist")
    assert details["en"].startswith("The app registration's client secret is invalid.")


async def test_subscription_problems_answer_in_the_asked_language(world: World) -> None:
    await _employ(world, ADMIN)
    url = f"{EMPLOYEE_URL}/subscription"
    german = await world.http.post(url, headers=GERMAN)
    english = await world.http.post(url, headers=ENGLISH)
    assert german.status_code == english.status_code == 409
    assert german.json()["detail"].startswith(f"Änderungsbenachrichtigungen für {MAX}")
    assert english.json()["detail"].startswith(f"Change notifications for {MAX} are off")
