"""Microsoft Graph client: MSAL auth, requests with Graph's headers, classified errors,
per-mailbox limits, and the calendar, delta, subscription and `$batch` operations."""

from app.graph.auth import AuthRegistry, GraphAuth, GraphCredentials, TokenProvider
from app.graph.client import TAG_PROPERTY_ID, GraphClient, GraphHttp
from app.graph.errors import (
    AccessDenied,
    AuthenticationFailed,
    GraphError,
    ItemNotFound,
    MailboxNotFound,
    PreconditionFailed,
    SyncStateNotFound,
    Throttled,
    Transient,
    UnexpectedGraphError,
)
from app.graph.limits import MailboxLimiter

__all__ = [
    "TAG_PROPERTY_ID",
    "AccessDenied",
    "AuthRegistry",
    "AuthenticationFailed",
    "GraphAuth",
    "GraphClient",
    "GraphCredentials",
    "GraphError",
    "GraphHttp",
    "ItemNotFound",
    "MailboxLimiter",
    "MailboxNotFound",
    "PreconditionFailed",
    "SyncStateNotFound",
    "Throttled",
    "TokenProvider",
    "Transient",
    "UnexpectedGraphError",
]
