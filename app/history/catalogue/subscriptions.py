"""Messages of the Graph change-notification subscriptions: set up, renewed, gone, failed, off."""

from __future__ import annotations

from app.history.catalogue import Texts

SUBSCRIPTIONS: Texts = {
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
}
