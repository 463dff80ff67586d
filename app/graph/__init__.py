"""Microsoft Graph client: MSAL auth, requests with Graph's headers, classified errors,
per-mailbox limits, and the calendar, delta, subscription and `$batch` operations."""

from app.graph.auth import AuthRegistry, GraphAuth, GraphCredentials, TokenProvider
from app.graph.client import GraphClient
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
from app.graph.odata import TAG_PROPERTY_ID
from app.graph.sender import GraphHttp, build_http_client

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
    "build_http_client",
]
