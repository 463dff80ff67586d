"""`GET /v1.0/users/{id | userPrincipalName}`: a directory read, so Entra's error codes apply."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.sandbox.errors import GraphError
from app.sandbox.pipeline import authenticate, graph_base, graph_response, runtime_of
from app.sandbox.state import USER_READ_ROLES

router = APIRouter()


@router.get("/v1.0/users/{user_ref}")
async def get_user(request: Request, user_ref: str) -> JSONResponse:
    token = authenticate(request)
    if not token.roles & USER_READ_ROLES:
        raise GraphError(
            403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    state = runtime_of(request).state
    with state.lock:
        user = state.tenants[token.tenant_id].find_user(user_ref)
    if user is None:
        raise GraphError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{user_ref}' does not exist or one of its queried reference-property"
            " objects are not present.",
        )
    display = user.display_name.split(" ", 1)
    return graph_response(
        {
            "@odata.context": f"{graph_base(request)}/$metadata#users/$entity",
            "businessPhones": [],
            "displayName": user.display_name,
            "givenName": display[0],
            "jobTitle": None,
            # A user without an Exchange mailbox has no mail address in the directory.
            "mail": user.user_principal_name if user.has_mailbox else None,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": display[1] if len(display) > 1 else None,
            "userPrincipalName": user.user_principal_name,
            "id": user.id,
        }
    )
