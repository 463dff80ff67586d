"""Error bodies exactly as Graph and Entra send them, and the exception handlers raise to send one.

GraphError          a Graph `{"error":{code,message,innerError}}` response
EntraError          an Entra token-endpoint `{"error","error_description","error_codes",…}`
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

GRAPH_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"  # noqa: E501
# graph-protocol.md §5: what a 401 from Graph carries.
WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize",'
    ' client_id="00000003-0000-0000-c000-000000000000"'
)


class GraphError(Exception):
    """Raised anywhere in a Graph route; the app turns it into Graph's error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        inner: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.inner = inner or {}


def graph_error_body(
    error: GraphError, *, now: datetime, request_id: str, client_request_id: str | None
) -> dict[str, Any]:
    # Graph's innerError date has no fraction and no zone (graph-protocol.md §5).
    inner: dict[str, str] = {"date": now.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": request_id}
    if client_request_id:
        inner["client-request-id"] = client_request_id
    inner.update(error.inner)
    return {"error": {"code": error.code, "message": error.message, "innerError": inner}}


class EntraError(Exception):
    """An AADSTS error from the token or discovery endpoint (graph-protocol.md §5.1)."""

    def __init__(self, status: int, error: str, code: int, text: str) -> None:
        super().__init__(f"AADSTS{code}: {text}")
        self.status = status
        self.error = error
        self.code = code
        self.text = text


def entra_error_body(error: EntraError, *, now: datetime) -> dict[str, Any]:
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    description = (
        f"AADSTS{error.code}: {error.text}\r\nTrace ID: {trace_id}\r\n"
        f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
    )
    return {
        "error": error.error,
        "error_description": description,
        "error_codes": [error.code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={error.code}",
    }


def tenant_not_found(tenant: str) -> EntraError:
    return EntraError(
        400,
        "invalid_tenant",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are"
        " signing into the correct cloud. Check with your subscription administrator, this may"
        " happen if there are no active subscriptions for the tenant.",
    )


def app_not_found(client_id: str, tenant: str) -> EntraError:
    return EntraError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant}'."
        " This can happen if the application has not been installed by the administrator of the"
        " tenant or consented to by any user in the tenant. You may have sent your authentication"
        " request to the wrong tenant.",
    )


def invalid_secret(client_id: str) -> EntraError:
    return EntraError(
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the client"
        f" secret value, not the client secret ID, for a secret added to app '{client_id}'.",
    )


def expired_secret(client_id: str) -> EntraError:
    return EntraError(
        401,
        "invalid_client",
        7000222,
        f"The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal"
        " to create new keys for your app: https://aka.ms/NewClientSecret, or consider using"
        " certificate credentials for added security: https://aka.ms/certCreds.",
    )


# Graph errors used in more than one module. Sources in graph-protocol.md §5 unless noted.
def invalid_user(user_ref: str) -> GraphError:
    return GraphError(404, "ErrorInvalidUser", f"The requested user '{user_ref}' is invalid.")


def item_not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def access_denied() -> GraphError:
    return GraphError(
        403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
    )


def policy_blocked() -> GraphError:
    return GraphError(
        403,
        "ErrorAccessDenied",
        "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy"
        " settings.",
    )


def mailbox_not_enabled() -> GraphError:
    return GraphError(
        404,
        "MailboxNotEnabledForRESTAPI",
        "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
    )


def bad_json() -> GraphError:
    # [issue:microsoftgraph/microsoft-graph-docs-contrib#6337]
    return GraphError(
        400,
        "BadRequest",
        "Unable to read JSON request payload. Please ensure Content-Type header is set and payload"
        " is of valid JSON format.",
    )


def unknown_property(name: str, type_name: str) -> GraphError:
    # [issue:microsoftgraph/msgraph-sdk-dotnet#450]: Outlook names its own types in the message.
    return GraphError(
        400,
        "RequestBodyRead",
        f"The property '{name}' does not exist on type '{type_name}'. Make sure to only use"
        " property names that are defined by the type or mark the type as open type.",
    )


def bad_literal(value: object, type_name: str) -> GraphError:
    return GraphError(
        400,
        "RequestBodyRead",
        f"Cannot convert the literal '{value}' to the expected type '{type_name}'.",
    )


def time_zone_not_supported(name: str) -> GraphError:
    # [issue:microsoftgraph/microsoft-graph-docs#4758]
    return GraphError(
        400,
        "TimeZoneNotSupportedException",
        "A valid TimeZone value must be specified. The following TimeZone value is not supported:"
        f" '{name}'.",
    )


def invalid_token(message: str) -> GraphError:
    return GraphError(
        401, "InvalidAuthenticationToken", message, headers={"WWW-Authenticate": WWW_AUTHENTICATE}
    )
