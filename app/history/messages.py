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
    "secret_expiring": {
        "de": "Der geheime Clientschlüssel der App-Registrierung läuft in höchstens {days} Tagen "
        "ab ({expires_at}); danach stoppt die Synchronisierung. Bitte in Entra einen neuen "
        "Schlüssel erstellen und in der Verbindung hinterlegen.",
        "en": "The app registration's client secret expires within {days} days ({expires_at}); "
        "then synchronisation stops. Create a new secret in Entra and enter it in the connection.",
    },
    "secret_expiring_soon": {
        "de": "Der geheime Clientschlüssel der App-Registrierung läuft innerhalb von 24 Stunden "
        "ab ({expires_at}); danach stoppt die Synchronisierung. Bitte sofort in Entra einen neuen "
        "Schlüssel erstellen und in der Verbindung hinterlegen.",
        "en": "The app registration's client secret expires within 24 hours ({expires_at}); then "
        "synchronisation stops. Create a new secret in Entra and enter it in the connection now.",
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
    "backfill_queued": {
        "de": "Die bereits vorhandenen Termine von {employee} ({count}) werden in den Kalender "
        "von {mailbox} übertragen.",
        "en": "The existing appointments of {employee} ({count}) are being synced to the "
        "calendar of {mailbox}.",
    },
    "resync_queued": {
        "de": "Neu-Synchronisierung: die Termine von {employee} ({count}) werden im Kalender von "
        "{mailbox} vollständig neu geschrieben.",
        "en": "Resync: the appointments of {employee} ({count}) are being written again in full "
        "to the calendar of {mailbox}.",
    },
    "removal_queued": {
        "de": "Die von calbridge angelegten Termine von {employee} ({count}) werden aus dem "
        "Kalender von {mailbox} entfernt.",
        "en": "The events calbridge created for {employee} ({count}) are being removed from the "
        "calendar of {mailbox}.",
    },
    "removal_none": {
        "de": "Im Kalender von {mailbox} gibt es keine von calbridge angelegten Termine von "
        "{employee}.",
        "en": "The calendar of {mailbox} holds no events calbridge created for {employee}.",
    },
    "removal_blocked": {
        "de": "Die von calbridge angelegten Termine von {employee} ({count}) können gerade nicht "
        "aus dem Kalender von {mailbox} entfernt werden: {reason} Sobald die Verbindung neue "
        "Zugangsdaten erhält, wird das Entfernen wiederholt; die fehlgeschlagenen Aufträge lassen "
        "sich auch unter /api/v1/jobs erneut starten.",
        "en": "The events calbridge created for {employee} ({count}) cannot be removed from the "
        "calendar of {mailbox} right now: {reason} The removal is retried when the connection "
        "gets new credentials; its failed jobs can also be retried under /api/v1/jobs.",
    },
    "resync_accepted": {
        "de": "Die Termine von {employee} werden im Kalender von {mailbox} neu synchronisiert.",
        "en": "The appointments of {employee} are being resynced to the calendar of {mailbox}.",
    },
    "resync_waiting": {
        "de": "Eine Neu-Synchronisierung von {employee} wartet bereits auf ihre Ausführung.",
        "en": "A resync of {employee} is already waiting to run.",
    },
    "settings_resync_queued": {
        "de": "Die Einstellungen der Verbindung wurden geändert; die betroffenen Termine "
        "({count}) werden angepasst.",
        "en": "The connection's settings changed; the affected appointments ({count}) are being "
        "updated.",
    },
    "subscription_disabled": {
        "de": "Änderungsbenachrichtigungen für {mailbox} sind ausgeschaltet: CALBRIDGE_PUBLIC_URL "
        "ist nicht gesetzt, daher kann Microsoft Graph calbridge nicht erreichen. Änderungen in "
        "Outlook werden nur durch den regelmäßigen Abgleich erkannt.",
        "en": "Change notifications for {mailbox} are off: CALBRIDGE_PUBLIC_URL is not set, so "
        "Microsoft Graph cannot reach calbridge. Changes in Outlook are only picked up by the "
        "periodic sync.",
    },
    "subscription_url_invalid": {
        "de": "Änderungsbenachrichtigungen für {mailbox} sind ausgeschaltet: CALBRIDGE_PUBLIC_URL "
        "ist unbrauchbar ({reason}).",
        "en": "Change notifications for {mailbox} are off: CALBRIDGE_PUBLIC_URL is unusable "
        "({reason}).",
    },
    "subscription_created": {
        "de": "Änderungsbenachrichtigungen für {mailbox} eingerichtet (gültig bis {expires_at}).",
        "en": "Change notifications for {mailbox} set up (valid until {expires_at}).",
    },
    "subscription_renewed": {
        "de": "Änderungsbenachrichtigungen für {mailbox} verlängert (gültig bis {expires_at}).",
        "en": "Change notifications for {mailbox} renewed (valid until {expires_at}).",
    },
    "subscription_reauthorized": {
        "de": "Änderungsbenachrichtigungen für {mailbox} erneut autorisiert.",
        "en": "Change notifications for {mailbox} reauthorized.",
    },
    "subscription_gone": {
        "de": "Das Abonnement für {mailbox} besteht bei Microsoft Graph nicht mehr; es wird neu "
        "angelegt und der Kalender vollständig neu abgeglichen.",
        "en": "The subscription for {mailbox} no longer exists in Microsoft Graph; it is being "
        "recreated and the calendar fully resynced.",
    },
    "subscription_missed": {
        "de": "Microsoft Graph meldet verpasste Benachrichtigungen für {mailbox}; der Kalender "
        "wird vollständig neu abgeglichen.",
        "en": "Microsoft Graph reports missed notifications for {mailbox}; the calendar is being "
        "fully resynced.",
    },
    "subscription_deleted": {
        "de": "Änderungsbenachrichtigungen für {mailbox} beendet.",
        "en": "Change notifications for {mailbox} stopped.",
    },
    "subscription_failed": {
        "de": "Änderungsbenachrichtigungen für {mailbox} konnten nicht eingerichtet werden: "
        "{reason}",
        "en": "Change notifications for {mailbox} could not be set up: {reason}",
    },
    "stray_removed": {
        "de": "Ein überzähliger calbridge-Termin im Kalender von {mailbox} wurde entfernt: Outlook "
        "hatte ihn erst angelegt, als calbridge schon weitergearbeitet hatte (z. B. nach einer "
        "Absage).",
        "en": "A surplus calbridge event in the calendar of {mailbox} was removed: Outlook created "
        "it only after calbridge had moved on (after a cancellation, say).",
    },
    "outlook_edited_restored": {
        "de": "Der Termin im Kalender von {mailbox} wurde in Outlook geändert; calbridge stellt "
        "ihn wieder her, denn bookingtime ist maßgeblich.",
        "en": "The event in the calendar of {mailbox} was changed in Outlook; calbridge restores "
        "it, as bookingtime is the source of truth.",
    },
    "outlook_deleted_restored": {
        "de": "Der Termin im Kalender von {mailbox} wurde in Outlook gelöscht; calbridge legt ihn "
        "wieder an, denn bookingtime ist maßgeblich.",
        "en": "The event in the calendar of {mailbox} was deleted in Outlook; calbridge creates it "
        "again, as bookingtime is the source of truth.",
    },
    "outlook_edited_kept": {
        "de": "Der Termin im Kalender von {mailbox} wurde in Outlook geändert; die Änderung bleibt "
        "und calbridge aktualisiert diesen Termin nicht mehr (nur eine Absage entfernt ihn).",
        "en": "The event in the calendar of {mailbox} was changed in Outlook; the change stays and "
        "calbridge no longer updates this event (only a cancellation removes it).",
    },
    "outlook_deleted_kept": {
        "de": "Der Termin im Kalender von {mailbox} wurde in Outlook gelöscht; er bleibt gelöscht "
        "und calbridge legt ihn nicht wieder an.",
        "en": "The event in the calendar of {mailbox} was deleted in Outlook; it stays deleted and "
        "calbridge does not create it again.",
    },
    "outlook_edited_reported": {
        "de": "Der Termin im Kalender von {mailbox} wurde in Outlook geändert; laut Einstellung "
        "der Verbindung wird das nur gemeldet.",
        "en": "The event in the calendar of {mailbox} was changed in Outlook; as the connection "
        "is set to, this is only reported.",
    },
    "outlook_deleted_reported": {
        "de": "Der Termin im Kalender von {mailbox} wurde in Outlook gelöscht; laut Einstellung "
        "der Verbindung wird das nur gemeldet.",
        "en": "The event in the calendar of {mailbox} was deleted in Outlook; as the connection "
        "is set to, this is only reported.",
    },
    "unmapped_employee": {
        "de": "Der Mitarbeiter {employee} ist keinem Postfach zugeordnet; der Termin wird für ihn "
        "nicht übertragen.",
        "en": "Employee {employee} is not mapped to a mailbox; the appointment is not synced "
        "for them.",
    },
    "internal_error": {
        "de": "Der Termin konnte wegen eines unerwarteten Fehlers in calbridge nicht übertragen "
        "werden; es folgt kein neuer Versuch. Fehler: {error}",
        "en": "The appointment could not be synchronised because of an unexpected error in "
        "calbridge; it is not retried. Error: {error}",
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


def has_message(code: str) -> bool:
    """Whether `code` is one of this module's codes (so its message can be rendered anew)."""
    return code in MESSAGES


def preferred_locale(accept_language: str | None) -> Locale | None:
    """The best of calbridge's languages for an `Accept-Language` header (RFC 9110 §12.5.4:
    ranges with q-values, `*` for any); None when the header names none of them."""
    best: tuple[float, int, Locale] | None = None
    for position, item in enumerate((accept_language or "").split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        locale: Locale | None = (
            "de" if primary in ("de", "*") else "en" if primary == "en" else None
        )
        if locale is None or not 0 < quality <= 1:
            continue
        # Higher quality wins; among equals, the earlier range.
        if best is None or (quality, -position) > (best[0], best[1]):
            best = (quality, -position, locale)
    return None if best is None else best[2]


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
