"""The sync history's stable codes and their readable German and English messages, and the one
mapping from a Graph failure to (code, params)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from app.graph.errors import (
    AccessDenied,
    AuthenticationFailed,
    GraphError,
    MailboxNotFound,
    Throttled,
    Transient,
)

Locale = Literal["de", "en"]

MESSAGES: Mapping[str, Mapping[Locale, str]] = {
    "mailbox_invalid": {
        "de": "Der Benutzer {mailbox} ist ungültig – entweder existiert er nicht in der "
        "Organisation oder die E-Mail-Adresse wurde falsch eingegeben.",
        "en": "User {mailbox} is invalid: it does not exist in the organization or the address "
        "is mistyped.",
    },
    "secret_invalid": {
        "de": "Der geheime Clientschlüssel der App-Registrierung ist ungültig. Bitte den Wert "
        "(nicht die ID) eines gültigen Schlüssels in der Verbindung hinterlegen.",
        "en": "The app registration's client secret is invalid. Enter the value (not the ID) "
        "of a valid secret in the connection.",
    },
    "secret_expired": {
        "de": "Der geheime Clientschlüssel der App-Registrierung ist abgelaufen. Bitte in Entra "
        "einen neuen Schlüssel erstellen und in der Verbindung hinterlegen.",
        "en": "The app registration's client secret has expired. Create a new secret in Entra "
        "and enter it in the connection.",
    },
    "tenant_not_found": {
        "de": "Der Mandant {tenant} wurde nicht gefunden. Bitte die Mandanten-ID (Verzeichnis-ID) "
        "in der Verbindung prüfen.",
        "en": "Tenant {tenant} was not found. Check the tenant (directory) ID in the connection.",
    },
    "app_not_in_tenant": {
        "de": "Die Anwendung {client_id} ist im Mandanten {tenant} nicht registriert. Bitte die "
        "Anwendungs-ID (Client-ID) prüfen.",
        "en": "Application {client_id} is not registered in tenant {tenant}. Check the "
        "application (client) ID.",
    },
    "consent_missing": {
        "de": "Der App fehlt die Anwendungsberechtigung Calendars.ReadWrite. Bitte in Entra unter "
        "„API-Berechtigungen“ Microsoft Graph › Anwendungsberechtigungen › Calendars.ReadWrite "
        "hinzufügen und die Administratorzustimmung erteilen.",
        "en": "The app lacks the Calendars.ReadWrite application permission. In Entra, open "
        "“API permissions”, add Microsoft Graph › Application permissions › Calendars.ReadWrite "
        "and grant admin consent.",
    },
    "access_policy_blocked": {
        "de": "Eine Anwendungszugriffsrichtlinie in Exchange Online verweigert der App den Zugriff "
        "auf das Postfach {mailbox}. Bitte das Postfach in die Richtlinie aufnehmen.",
        "en": "An Exchange Online application access policy denies the app access to mailbox "
        "{mailbox}. Add the mailbox to the policy.",
    },
    "auth_failed": {
        "de": "Die Anmeldung bei Microsoft ist fehlgeschlagen: {error}",
        "en": "Signing in to Microsoft failed: {error}",
    },
    "throttled": {
        "de": "Microsoft Graph drosselt die Anfragen für {mailbox}; neuer Versuch in "
        "{retry_after} s.",
        "en": "Microsoft Graph is throttling requests for {mailbox}; retrying in {retry_after} s.",
    },
    "graph_unavailable": {
        "de": "Microsoft Graph ist vorübergehend nicht erreichbar; neuer Versuch folgt.",
        "en": "Microsoft Graph is temporarily unavailable; retrying.",
    },
    "graph_error": {
        "de": "Microsoft Graph hat die Anfrage abgelehnt: {error}",
        "en": "Microsoft Graph refused the request: {error}",
    },
    "invalid_appointment": {
        "de": "Der Termin kann nicht übertragen werden: {error}",
        "en": "The appointment cannot be synchronised: {error}",
    },
    "created": {
        "de": "Termin im Kalender von {mailbox} angelegt.",
        "en": "Appointment created in the calendar of {mailbox}.",
    },
    "updated": {
        "de": "Termin im Kalender von {mailbox} aktualisiert.",
        "en": "Appointment updated in the calendar of {mailbox}.",
    },
    "deleted": {
        "de": "Termin aus dem Kalender von {mailbox} entfernt.",
        "en": "Appointment removed from the calendar of {mailbox}.",
    },
    "unchanged": {
        "de": "Termin im Kalender von {mailbox} ist bereits aktuell.",
        "en": "Appointment in the calendar of {mailbox} is already up to date.",
    },
    "unmapped_employee": {
        "de": "Der Mitarbeiter {employee} ist keinem Postfach zugeordnet; der Termin wird für ihn "
        "nicht übertragen.",
        "en": "Employee {employee} is not mapped to a mailbox; the appointment is not synced "
        "for them.",
    },
}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def message(code: str, locale: str, params: Mapping[str, Any] | None = None) -> str:
    """The readable message for `code` in `locale` ("de" unless "en"); unknown params are "?"."""
    texts = MESSAGES.get(code) or MESSAGES["graph_error"]
    lang: Locale = "en" if locale.lower().startswith("en") else "de"
    return texts[lang].format_map(_Blank(params or {}))


def error_code(
    error: GraphError, *, mailbox: str, tenant: str = "", client_id: str = ""
) -> tuple[str, dict[str, Any]]:
    """The history code and message params for a Graph failure on `mailbox`."""
    params: dict[str, Any] = {"mailbox": mailbox}
    if error.code:
        params["graph_code"] = error.code
    if isinstance(error, MailboxNotFound):
        return "mailbox_invalid", params
    if isinstance(error, AccessDenied):
        code = "consent_missing" if error.reason == "consent_missing" else "access_policy_blocked"
        return code, params
    if isinstance(error, AuthenticationFailed):
        kinds = {
            "invalid_secret": "secret_invalid",
            "expired_secret": "secret_expired",
            "tenant_not_found": "tenant_not_found",
            "app_not_found": "app_not_in_tenant",
        }
        params.update(tenant=tenant, client_id=client_id, error=error.message)
        if error.aadsts_code is not None:
            params["aadsts_code"] = error.aadsts_code
        return kinds.get(error.kind, "auth_failed"), params
    if isinstance(error, Throttled):
        params["retry_after"] = round(error.retry_after, 1)
        return "throttled", params
    if isinstance(error, Transient):
        return "graph_unavailable", params
    params["error"] = error.message
    if error.permanent:
        return "graph_error", params
    return "graph_unavailable", params
