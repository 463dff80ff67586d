"""Admin checks of a connection against Microsoft: acquire a token, read a mailbox's calendar.

Every check ends in a `CheckResult`: `ok` is True or False when Microsoft gave an answer, None
when it could not be asked (unreachable, timed out) or the check was skipped. Messages are the
sync history's readable texts (`app.history.messages`) plus the few this module adds; a result
keeps the params of its message, so it can be told in either language.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import SecretStr

from app.credentials.clients import GraphClients
from app.crypto import SecretBox, SecretKeyError
from app.graph.auth import GraphCredentials
from app.graph.errors import GraphError
from app.history.messages import as_locale, error_code, message
from app.models import Connection, Employee
from app.models.base import utcnow

# The verify endpoint waits this long per check; the employee PUT only briefly, then defers.
VERIFY_TIMEOUT = 10.0
EMPLOYEE_CHECK_TIMEOUT = 3.0
JOB_CHECK_TIMEOUT = 30.0

# Codes of checks that could not reach a verdict (Graph unreachable / not asked).
UNAVAILABLE_CODES = frozenset({"graph_unavailable", "throttled"})

_TEXTS: Mapping[str, Mapping[str, str]] = {
    "token_acquired": {
        "de": "Anmeldung bei Microsoft erfolgreich: die App hat ein Zugriffstoken erhalten.",
        "en": "Signed in to Microsoft: the app received an access token.",
    },
    "bookingtime_token_acquired": {
        "de": "Anmeldung bei bookingtime erfolgreich: die App {client_id} hat ein Zugriffstoken "
        "für die Organisation erhalten.",
        "en": "Signed in to bookingtime: app {client_id} received an access token for the "
        "organisation.",
    },
    "mailbox_ok": {
        "de": "Der Kalender des Postfachs {mailbox} ist für die App erreichbar.",
        "en": "The calendar of mailbox {mailbox} is accessible to the app.",
    },
    "skipped": {
        "de": "Nicht geprüft, weil eine vorherige Prüfung fehlgeschlagen ist.",
        "en": "Not checked because an earlier check failed.",
    },
    "check_pending": {
        "de": "Microsoft Graph ist gerade nicht erreichbar; das Postfach {mailbox} wird im "
        "Hintergrund geprüft.",
        "en": "Microsoft Graph cannot be reached right now; mailbox {mailbox} is checked in the "
        "background.",
    },
    "secret_unreadable": {
        "de": "Der gespeicherte Clientschlüssel kann nicht entschlüsselt werden. Bitte den "
        "Schlüssel in der Verbindung erneut hinterlegen.",
        "en": "The stored client secret cannot be decrypted. Enter the secret in the connection "
        "again.",
    },
}


def text(code: str, locale: str, params: Mapping[str, Any] | None = None) -> str:
    """The readable message for a check code in `locale` ("de" unless "en")."""
    texts = _TEXTS.get(code)
    if texts is None:
        return message(code, locale, params)
    return texts[as_locale(locale)].format(**(params or {}))


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: ok True/False, or None when no verdict (skipped, unreachable)."""

    name: str
    ok: bool | None
    code: str
    message: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def message_in(self, locale: str) -> str:
        """The message in `locale`."""
        return text(self.code, locale, self.params)

    @property
    def pending(self) -> bool:
        """Microsoft could not be asked: try again later."""
        return self.ok is None and self.code != "skipped"


def _credentials(connection: Connection, secret_box: SecretBox) -> GraphCredentials:
    return GraphCredentials(
        tenant=connection.tenant,
        client_id=connection.client_id,
        client_secret=SecretStr(secret_box.decrypt(connection.client_secret_encrypted)),
    )


def _failure(
    name: str, error: GraphError, connection: Connection, mailbox: str, locale: str
) -> CheckResult:
    code, params = error_code(
        error, mailbox=mailbox, tenant=connection.tenant, client_id=connection.client_id
    )
    ok = None if code in UNAVAILABLE_CODES else False
    return _result(name, ok, code, locale, params)


def _result(
    name: str, ok: bool | None, code: str, locale: str, params: Mapping[str, Any] | None = None
) -> CheckResult:
    return CheckResult(name, ok, code, text(code, locale, params), dict(params or {}))


def _unavailable(name: str, mailbox: str, locale: str) -> CheckResult:
    return _result(name, None, "graph_unavailable", locale, {"mailbox": mailbox})


async def check_token(
    connection: Connection,
    *,
    graph: GraphClients,
    secret_box: SecretBox,
    locale: str,
    wait_seconds: float = VERIFY_TIMEOUT,
) -> CheckResult:
    """Acquire a token with the connection's credentials."""
    try:
        credentials = _credentials(connection, secret_box)
    except SecretKeyError:
        return _result("token", False, "secret_unreadable", locale)
    try:
        async with asyncio.timeout(wait_seconds):
            await graph.auth.provider(credentials).token()
    except GraphError as exc:
        return _failure("token", exc, connection, "", locale)
    except TimeoutError:
        return _unavailable("token", "", locale)
    return _result("token", True, "token_acquired", locale)


async def check_mailbox(
    connection: Connection,
    mailbox: str,
    *,
    graph: GraphClients,
    secret_box: SecretBox,
    locale: str,
    wait_seconds: float = VERIFY_TIMEOUT,
) -> CheckResult:
    """Read the mailbox's default calendar with the connection's app."""
    try:
        client = graph.client_for(connection, secret_box)
    except SecretKeyError:
        return _result("mailbox", False, "secret_unreadable", locale)
    try:
        async with asyncio.timeout(wait_seconds):
            await client.check_mailbox(mailbox)
    except GraphError as exc:
        return _failure("mailbox", exc, connection, mailbox, locale)
    except TimeoutError:
        return _unavailable("mailbox", mailbox, locale)
    return _result("mailbox", True, "mailbox_ok", locale, {"mailbox": mailbox})


async def verify_connection(
    connection: Connection,
    *,
    graph: GraphClients,
    secret_box: SecretBox,
    locale: str,
    mailbox: str | None = None,
    wait_seconds: float = VERIFY_TIMEOUT,
) -> list[CheckResult]:
    """The checks in order (token, then the mailbox if given); after a failure the rest skip."""
    token = as_verdict(
        await check_token(
            connection, graph=graph, secret_box=secret_box, locale=locale, wait_seconds=wait_seconds
        )
    )
    results = [token]
    if mailbox is not None:
        if token.ok:
            results.append(
                as_verdict(
                    await check_mailbox(
                        connection,
                        mailbox,
                        graph=graph,
                        secret_box=secret_box,
                        locale=locale,
                        wait_seconds=wait_seconds,
                    )
                )
            )
        else:
            results.append(_result("mailbox", None, "skipped", locale))
    return results


def as_verdict(result: CheckResult) -> CheckResult:
    """For the verify endpoint an unreachable service is a failed check."""
    if result.pending:
        return replace(result, ok=False)
    return result


def apply_to_employee(employee: Employee, result: CheckResult) -> None:
    """Record a verdict in the employee's status fields (a pending check changes nothing)."""
    if result.ok is True:
        employee.last_error_at = None
        employee.last_error_code = None
        employee.last_error_message = None
    elif result.ok is False:
        employee.last_error_at = utcnow()
        employee.last_error_code = result.code
        employee.last_error_message = result.message


def pending_result(mailbox: str, locale: str) -> CheckResult:
    """What the employee PUT answers when the check runs in the background."""
    return _result("mailbox", None, "check_pending", locale, {"mailbox": mailbox})
