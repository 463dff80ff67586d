"""translate(): time zones, subject, body, location, sanitizing, hashes; never attendees."""

from __future__ import annotations

import json
import random
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest

from app.sync.settings import TranslationSettings
from app.sync.translate import (
    EVENT_FIELDS,
    EventBody,
    InvalidAppointment,
    _line,
    _text,
    render_subject,
    translate,
)
from tests.sync.samples import appointment

DEFAULT = TranslationSettings()


def event(settings: TranslationSettings = DEFAULT, **changes: Any) -> dict[str, Any]:
    return dict(translate(appointment(**changes), settings).to_graph())


# --- time zones ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "zone", "date_time", "time_zone"),
    [
        # Berlin summer (+02:00) and winter (+01:00): same Windows zone, local wall time kept.
        (
            "2025-06-02T10:00:00+02:00",
            "Europe/Berlin",
            "2025-06-02T10:00:00",
            "W. Europe Standard Time",
        ),
        (
            "2025-01-15T09:30:00+01:00",
            "Europe/Berlin",
            "2025-01-15T09:30:00",
            "W. Europe Standard Time",
        ),
        # An instant given in another offset is shown as the zone's wall time.
        ("2025-06-02T08:00:00Z", "Europe/Berlin", "2025-06-02T10:00:00", "W. Europe Standard Time"),
        (
            "2025-07-04T09:00:00-04:00",
            "America/New_York",
            "2025-07-04T09:00:00",
            "Eastern Standard Time",
        ),
        (
            "2025-12-01T09:00:00-05:00",
            "America/New_York",
            "2025-12-01T09:00:00",
            "Eastern Standard Time",
        ),
        (
            "2025-06-02T10:00:00+02:00",
            "Europe/Vienna",
            "2025-06-02T10:00:00",
            "W. Europe Standard Time",
        ),
        ("2025-06-02T10:00:00+05:30", "Asia/Kolkata", "2025-06-02T10:00:00", "India Standard Time"),
        # No zone, an unknown zone, or an empty one: UTC, converted (never the naive wall time).
        ("2025-06-02T10:00:00+02:00", None, "2025-06-02T08:00:00", "UTC"),
        ("2025-06-02T10:00:00+02:00", "Mars/Olympus_Mons", "2025-06-02T08:00:00", "UTC"),
        ("2025-06-02T10:00:00+02:00", "", "2025-06-02T08:00:00", "UTC"),
        # Spring forward: 03:30 exists only as +02:00.
        (
            "2025-03-30T03:30:00+02:00",
            "Europe/Berlin",
            "2025-03-30T03:30:00",
            "W. Europe Standard Time",
        ),
        # Fall back: 02:30 happens twice, so the wall time would be ambiguous: UTC instead.
        ("2025-10-26T02:30:00+02:00", "Europe/Berlin", "2025-10-26T00:30:00", "UTC"),
        ("2025-10-26T02:30:00+01:00", "Europe/Berlin", "2025-10-26T01:30:00", "UTC"),
        # Just outside the fold, the zone is used again.
        (
            "2025-10-26T03:00:00+01:00",
            "Europe/Berlin",
            "2025-10-26T03:00:00",
            "W. Europe Standard Time",
        ),
        # Naive time with a zone: bookingtime's wall time in that zone.
        ("2025-06-02T10:00:00", "Europe/Berlin", "2025-06-02T10:00:00", "W. Europe Standard Time"),
    ],
)
def test_start_in_the_appointments_windows_zone(
    start: str, zone: str | None, date_time: str, time_zone: str
) -> None:
    body = event(start=start, end="2026-01-01T00:00:00+00:00", timeZone=zone)
    assert body["start"] == {"dateTime": date_time, "timeZone": time_zone}


@pytest.mark.parametrize(
    ("start", "zone"),
    [
        ("2025-06-02T10:00:00+02:00", "Europe/Berlin"),
        ("2025-10-26T02:30:00+01:00", "Europe/Berlin"),
        ("2025-03-09T03:15:00-04:00", "America/New_York"),
        ("2025-06-02T10:00:00+02:00", None),
        ("2025-06-02T23:30:00-07:00", "America/Los_Angeles"),
    ],
)
def test_the_instant_is_exactly_the_appointments(start: str, zone: str | None) -> None:
    from zoneinfo import ZoneInfo

    from tzlocal.windows_tz import win_tz

    body = event(start=start, end="2026-01-01T00:00:00+00:00", timeZone=zone)
    name = body["start"]["timeZone"]
    tz = UTC if name == "UTC" else ZoneInfo(win_tz[name])
    local = datetime.fromisoformat(body["start"]["dateTime"]).replace(tzinfo=tz)
    assert local == datetime.fromisoformat(start)


def test_end_uses_the_same_zone() -> None:
    body = event()
    assert body["end"] == {"dateTime": "2025-06-02T11:00:00", "timeZone": "W. Europe Standard Time"}


@pytest.mark.parametrize(
    "changes",
    [
        {"start": None},
        {"start": "tomorrow"},
        {"start": "2025-06-02T10:00:00", "timeZone": None},
        {"start": "2025-06-02T10:00:00", "timeZone": "Nowhere/Special"},
        {"end": "2025-06-02T09:00:00+02:00"},
    ],
)
def test_untranslatable_times_raise(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidAppointment):
        translate(appointment(**changes), DEFAULT)


# --- subject ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "changes", "subject"),
    [
        ("{name} – {customer}", {}, "Beratungsgespräch – Erika Musterfrau"),
        ("{name} – {customer}", {"customer": []}, "Beratungsgespräch"),
        ("{name} – {customer}", {"customer": None}, "Beratungsgespräch"),
        ("{name} – {customer}", {"customer": {"firstName": "Erika"}}, "Beratungsgespräch – Erika"),
        (
            "{name} – {customer}",
            {"customer": [{"firstName": "A", "lastName": "B"}, {"lastName": "C"}]},
            "Beratungsgespräch – A B, C",
        ),
        ("{customer} – {name}", {"customer": []}, "Beratungsgespräch"),
        (
            "{name} ({customer}) – {service}",
            {"customer": []},
            "Beratungsgespräch – Beratung 60 min",
        ),
        ("{name} ({customer})", {"customer": []}, "Beratungsgespräch"),
        ("{name} ({customer})", {}, "Beratungsgespräch (Erika Musterfrau)"),
        ("{service}: {employee}", {}, "Beratung 60 min: Max Mustermann"),
        (
            "{name} – {customer} – {service}",
            {"customer": {}},
            "Beratungsgespräch – Beratung 60 min",
        ),
        ("{name} in {city}", {}, "Beratungsgespräch in Hamburg"),
        ("Termin {{{name}}}", {}, "Termin {Beratungsgespräch}"),
        # Nothing to show at all: a plain "Termin" rather than an empty subject.
        ("{name} – {customer}", {"name": "", "customer": None}, "Termin"),
        # The appointment's own text is never trimmed, only the template's separators.
        ("{name}", {"name": "Check-up –"}, "Check-up –"),
    ],
)
def test_subject(template: str, changes: dict[str, Any], subject: str) -> None:
    settings = TranslationSettings(subject_template=template)
    assert event(settings, **changes)["subject"] == subject


def test_subject_fallback_in_english() -> None:
    settings = TranslationSettings(locale="en")
    assert event(settings, name=None, customer=[])["subject"] == "Appointment"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{name} – {kunde}", "unknown placeholder {kunde}"),
        ("{} – {name}", "unknown placeholder {}"),
        ("{0}", "unknown placeholder {0}"),
        ("{name.upper}", "unknown placeholder {name.upper}"),
        ("{name!r}", "takes no conversion or format"),
        ("{name:>40}", "takes no conversion or format"),
        ("{name", "not a valid template"),
        ("name}", "not a valid template"),
    ],
)
def test_bad_templates_fail_when_set(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        TranslationSettings(subject_template=template)


def test_subject_is_one_clean_line_of_at_most_255() -> None:
    body = event(name="A\x00B\r\nC\tD\x1b" + "x" * 400)
    assert body["subject"].startswith("AB C D")
    assert len(body["subject"]) == 255
    assert body["subject"].endswith("…")


# --- body ---------------------------------------------------------------------------------------


def test_body_german() -> None:
    body = event(description="Erstgespräch")["body"]
    assert body == {
        "contentType": "text",
        "content": "Erstgespräch\n\n"
        "Notizen:\nBitte Unterlagen mitbringen\n\n"
        "Kunde: Erika Musterfrau\nE-Mail: erika@example.com\nTelefon: +491701234567",
    }


def test_body_english() -> None:
    content = event(TranslationSettings(locale="en"))["body"]["content"]
    assert content == (
        "Notes:\nBitte Unterlagen mitbringen\n\n"
        "Customer: Erika Musterfrau\nEmail: erika@example.com\nPhone: +491701234567"
    )


def test_contact_opt_out_keeps_the_name_only() -> None:
    content = event(TranslationSettings(include_customer_contact=False))["body"]["content"]
    assert "Kunde: Erika Musterfrau" in content
    assert "erika@example.com" not in content
    assert "+49" not in content


def test_body_with_nothing_to_say_is_empty() -> None:
    body = event(description=None, notes="", customer=[])["body"]
    assert body == {"contentType": "text", "content": ""}


def test_body_strips_control_characters_and_keeps_lines() -> None:
    content = event(notes="a\x00b\r\nc\x07\td\ud800", customer=None)["body"]["content"]
    assert content == "Notizen:\nab\nc\td"


def test_exactly_the_control_characters_and_lone_surrogates_are_dropped() -> None:
    """Every code point of Unicode's categories Cc and Cs goes from names and text, and no
    other (U+200B, U+FEFF and U+00A0 stay, say); text keeps its tabs and newlines."""
    kept_in_line: list[str] = []
    for point in range(0x110000):
        char = chr(point)
        if unicodedata.category(char) in ("Cc", "Cs"):
            assert _line(f"a{char}b") in ("ab", "a b"), hex(point)  # a break becomes a space
            expected = "a" + (char if char in "\t\n" else "") + "b"
            if char == "\r":
                expected = "a\nb"
            assert _text(f"a{char}b") == expected, hex(point)
        elif not char.isspace():
            kept_in_line.append(char)
    sample = "".join(kept_in_line[::97])
    assert _line(sample) == sample and _text(sample) == sample


def test_body_is_capped() -> None:
    content = event(description="x" * 50_000)["body"]["content"]
    assert len(content) == 32_000


# --- location -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "location"),
    [
        (
            None,
            {"displayName": ""},
        ),
        (
            {"street": "Musterstr. 1", "zip": "20095", "city": "Hamburg", "country": "DE"},
            {
                "displayName": "Musterstr. 1, 20095 Hamburg, DE",
                "address": {
                    "street": "Musterstr. 1",
                    "postalCode": "20095",
                    "city": "Hamburg",
                    "countryOrRegion": "DE",
                },
            },
        ),
        (
            {"name": "Kanzlei Nord", "extra": "2. OG", "street": "", "zip": None, "city": "Kiel"},
            {
                "displayName": "Kanzlei Nord, 2. OG, Kiel",
                "address": {"street": "2. OG", "city": "Kiel"},
            },
        ),
    ],
)
def test_location(address: Any, location: dict[str, Any]) -> None:
    assert event(address=address)["location"] == location


def test_location_from_the_sample() -> None:
    assert (
        event()["location"]["displayName"] == "Kanzlei Nord, 2. OG, Musterstr. 1, 20095 Hamburg, DE"
    )


# --- fixed fields, reminder, category, cancel mark ----------------------------------------------


def test_defaults() -> None:
    body = event()
    assert body["showAs"] == "busy"
    assert body["categories"] == ["bookingtime"]
    assert body["isReminderOn"] is True
    assert body["reminderMinutesBeforeStart"] == 15
    assert set(body) == set(EVENT_FIELDS)


def test_reminder_off_and_no_category() -> None:
    body = event(TranslationSettings(reminder_minutes=None, category=None))
    assert body["isReminderOn"] is False
    assert "reminderMinutesBeforeStart" not in body
    assert body["categories"] == []


@pytest.mark.parametrize(("locale", "prefix"), [("de", "Abgesagt: "), ("en", "Canceled: ")])
def test_canceled_is_marked_free_without_reminder(locale: str, prefix: str) -> None:
    settings = TranslationSettings(on_cancel="mark", locale=locale)
    body = translate(appointment("canceled"), settings).to_graph()
    assert body["subject"] == prefix + "Beratungsgespräch – Erika Musterfrau"
    assert body["showAs"] == "free"
    assert body["isReminderOn"] is False


def test_settings_are_immutable_and_strict() -> None:
    with pytest.raises(ValueError):
        TranslationSettings(on_cancel="archive")
    with pytest.raises(ValueError):
        TranslationSettings(reminder_minutes=-5)
    with pytest.raises(ValueError):
        TranslationSettings(colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        DEFAULT.locale = "en"  # type: ignore[misc]


# --- never attendees ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["created", "updated", "moved", "canceled"])
def test_never_attendees(name: str) -> None:
    payload = appointment(name)
    payload["attendees"] = [{"emailAddress": {"address": "erika@example.com"}}]
    payload["customer"] = [payload["customer"], {"email": "zweite@example.com"}]
    for settings in (DEFAULT, TranslationSettings(on_cancel="mark")):
        body = translate(payload, settings).to_graph()
        assert "attendees" not in body
        assert "erika@example.com" not in json.dumps({k: v for k, v in body.items() if k != "body"})


# --- hashes -------------------------------------------------------------------------------------


def shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


def test_hashes_are_stable_across_dict_ordering() -> None:
    reference = translate(appointment(), DEFAULT).field_hashes()
    rng = random.Random(4)
    for _ in range(10):
        assert translate(shuffled(appointment(), rng), DEFAULT).field_hashes() == reference
    assert set(reference) == set(EVENT_FIELDS)
    assert all(len(h) == 64 for h in reference.values())


def test_a_move_changes_only_the_times_hashes() -> None:
    before = translate(appointment(), DEFAULT).field_hashes()
    moved = appointment(start="2025-06-03T14:30:00+02:00", end="2025-06-03T15:30:00+02:00")
    after = translate(moved, DEFAULT).field_hashes()
    assert {k for k in before if before[k] != after[k]} == {"start", "end"}


def test_event_body_is_immutable_and_fields_selects() -> None:
    body = translate(appointment(), DEFAULT)
    assert isinstance(body, EventBody)
    with pytest.raises(AttributeError):
        body.subject = "x"  # type: ignore[misc]
    graph = body.to_graph()
    graph["categories"].append("mutated")
    assert body.to_graph()["categories"] == ["bookingtime"]
    assert dict(body.fields(["start", "end"])) == {"start": graph["start"], "end": graph["end"]}


def test_render_subject_is_usable_alone() -> None:
    assert render_subject("{service} – {name}", {"name": "X"}) == "X"
