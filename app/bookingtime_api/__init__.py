"""bookingtime App API client: the two-step OAuth flow with a token per organisation, requests
with bookingtime's envelope, classified errors, typed records and ISO weeks. No database access.
"""

from app.bookingtime_api.auth import AppCredentials, TokenBroker
from app.bookingtime_api.client import BookingtimeClient, timestamp_text
from app.bookingtime_api.errors import (
    BookingtimeError,
    CredentialsRefused,
    InvalidRecord,
    NotFound,
    OrganizationNotPermitted,
    Throttled,
    Transient,
    UnexpectedResponse,
    ValidationFailed,
)
from app.bookingtime_api.schemas import (
    Appointment,
    AppointmentWindow,
    AvailabilityException,
    BookingResource,
    BookingResourceRef,
    Employee,
    Listing,
    Synchronization,
)
from app.bookingtime_api.sender import build_http_client
from app.bookingtime_api.weeks import iso_week, iso_weeks, week_bounds

__all__ = [
    "AppCredentials",
    "Appointment",
    "AppointmentWindow",
    "AvailabilityException",
    "BookingResource",
    "BookingResourceRef",
    "BookingtimeClient",
    "BookingtimeError",
    "CredentialsRefused",
    "Employee",
    "InvalidRecord",
    "Listing",
    "NotFound",
    "OrganizationNotPermitted",
    "Synchronization",
    "Throttled",
    "TokenBroker",
    "Transient",
    "UnexpectedResponse",
    "ValidationFailed",
    "build_http_client",
    "iso_week",
    "iso_weeks",
    "timestamp_text",
    "week_bounds",
]
