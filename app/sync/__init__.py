"""The sync core: translate a bookingtime appointment into an Outlook event and plan the Graph
writes per mailbox (pure: no database, no HTTP); the service that executes plans builds on it."""

from app.sync.keys import TRANSACTION_NAMESPACE, appointment_tag, transaction_id
from app.sync.planner import Action, Create, Delete, MappingState, Skip, Update, plan
from app.sync.settings import TranslationSettings
from app.sync.translate import EventBody, InvalidAppointment, translate

__all__ = [
    "TRANSACTION_NAMESPACE",
    "Action",
    "Create",
    "Delete",
    "EventBody",
    "InvalidAppointment",
    "MappingState",
    "Skip",
    "TranslationSettings",
    "Update",
    "appointment_tag",
    "plan",
    "transaction_id",
    "translate",
]
