"""Messages of appointments and employees: what a sync wrote, skipped or could not write,
the resyncs and removals queued, and the Outlook changes judged."""

from __future__ import annotations

from app.history.catalogue import Texts

APPOINTMENTS: Texts = {
    "invalid_appointment": {
        "de": "Der Termin kann nicht übertragen werden: {reason}",
        "en": "The appointment cannot be synchronised: {reason}",
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
    "job_internal_error": {
        "de": "Der Hintergrundauftrag {kind} ist wegen eines unerwarteten Fehlers in calbridge "
        "fehlgeschlagen; es folgt kein neuer Versuch. Fehler: {error}",
        "en": "The background job {kind} failed because of an unexpected error in calbridge; "
        "it is not retried. Error: {error}",
    },
}

#: Why bookingtime's payload cannot be planned or translated (app.sync.translate's
#: InvalidAppointment): the `{reason}` of `invalid_appointment`, named by `reason_code`; a time
#: field's name comes by `field_code`, one of the `time_*` terms.
REASONS: Texts = {
    "appointment_id_missing": {
        "de": "er hat keine ID",
        "en": "the appointment has no id",
    },
    "appointment_resources_missing": {
        "de": "ihm fehlt die Liste der Mitarbeiter (bookingResourceList)",
        "en": "the appointment has no bookingResourceList",
    },
    "appointment_ends_before_start": {
        "de": "er endet, bevor er beginnt",
        "en": "the appointment ends before it starts",
    },
    "appointment_outside_calendar": {
        "de": "seine Zeit liegt außerhalb des Kalenders",
        "en": "the appointment's time is outside the calendar",
    },
    "time_missing": {
        "de": "die {field} fehlt",
        "en": "the appointment has no {field} time",
    },
    "time_not_iso": {
        "de": "die {field} ist keine Zeitangabe nach ISO 8601",
        "en": "the appointment's {field} is not an ISO 8601 time",
    },
    "time_without_zone": {
        "de": "die {field} hat weder Zeitversatz noch Zeitzone",
        "en": "the appointment's {field} has neither offset nor zone",
    },
    "time_out_of_range": {
        "de": "die {field} ({value}) liegt nicht zwischen {earliest} und {latest}",
        "en": "the appointment's {field} ({value}) is not between {earliest} and {latest}",
    },
    "time_start": {"de": "Startzeit", "en": "start"},
    "time_end": {"de": "Endzeit", "en": "end"},
}
