"""Every ORM model, one module per table: the single import Alembic needs."""

from app.models.admin_token import AdminToken
from app.models.appointment import Appointment
from app.models.base import Base
from app.models.busy_block import BusyBlock
from app.models.calendar_sync import CalendarSync
from app.models.connection import Connection
from app.models.employee import Employee
from app.models.event_mapping import EventMapping
from app.models.inbox_event import InboxEvent
from app.models.job import Job
from app.models.mailbox import Mailbox
from app.models.subscription import Subscription
from app.models.sync_record import SyncRecord

__all__ = [
    "AdminToken",
    "Appointment",
    "Base",
    "BusyBlock",
    "CalendarSync",
    "Connection",
    "Employee",
    "EventMapping",
    "InboxEvent",
    "Job",
    "Mailbox",
    "Subscription",
    "SyncRecord",
]
