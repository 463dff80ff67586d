"""Messages of the failures every domain meets: Microsoft Entra refusing the app's credentials,
Microsoft Graph refusing, throttling or missing a request; bookingtime refusing the app."""

from __future__ import annotations

from app.history.catalogue import Texts

FAILURES: Texts = {
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
    # bookingtime's App API refusing or missing the app's credentials.
    "bookingtime_credentials_refused": {
        "de": "bookingtime hat die Zugangsdaten der App (Client-ID {client_id}) abgelehnt. Bitte "
        "Client-ID und Client-Secret der bookingtime-App in der Verbindung prüfen.",
        "en": "bookingtime refused the app's credentials (client ID {client_id}). Check the "
        "bookingtime app's client ID and client secret in the connection.",
    },
    "bookingtime_not_permitted": {
        "de": "Die bookingtime-App {client_id} ist für diese Organisation nicht freigegeben. "
        "Bitte die App in bookingtime für die Organisation freigeben.",
        "en": "The bookingtime app {client_id} is not permitted for this organisation. Permit "
        "the app for the organisation in bookingtime.",
    },
    "bookingtime_secret_unreadable": {
        "de": "Das gespeicherte Client-Secret der bookingtime-App kann nicht entschlüsselt "
        "werden. Bitte das Secret in der Verbindung erneut hinterlegen.",
        "en": "The stored client secret of the bookingtime app cannot be decrypted. Enter the "
        "secret in the connection again.",
    },
    "bookingtime_unavailable": {
        "de": "bookingtime ist vorübergehend nicht erreichbar: {error}",
        "en": "bookingtime is temporarily unavailable: {error}",
    },
    "bookingtime_error": {
        "de": "bookingtime hat die Anmeldung der App abgelehnt: {error}",
        "en": "bookingtime refused the app's sign-in: {error}",
    },
}
