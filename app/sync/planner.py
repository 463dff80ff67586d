"""plan(): one appointment snapshot + the connection's employee mappings + what calbridge already
wrote → one action per target mailbox (Create | Update | Delete | Skip). Pure; the executor
contract (what the caller does with each action) is plan()'s docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.graph.schemas import EventWrite
from app.sync.keys import appointment_tag, transaction_id
from app.sync.settings import TranslationSettings
from app.sync.translate import EventBody, InvalidAppointment, translate

SkipReason = Literal["unchanged", "unmapped", "canceled", "detached"]
DeleteReason = Literal["canceled", "removed", "unmapped", "mailbox_changed", "duplicate"]


@dataclass(frozen=True, slots=True)
class MappingState:
    """One stored mapping row: calbridge's event for (appointment, employee) in one mailbox.

    `graph_event_id` None and not `deleted`: a create was started (row written first) and its
    outcome is unknown. `deleted`: a tombstone, kept so a generation is never reused.
    `field_hashes`: `EventBody.field_hashes()` of the last successful write. `detached`: a
    person changed the event in Outlook and the policy kept their version: never updated (nor
    re-created) again, still deleted when the appointment goes.
    """

    booking_resource_id: str
    mailbox: str
    generation: int
    graph_event_id: str | None = None
    field_hashes: Mapping[str, str] = field(default_factory=dict)
    deleted: bool = False
    detached: bool = False


@dataclass(frozen=True, slots=True)
class Create:
    """POST the event (`lookup_first`: after looking up the tag, see plan())."""

    mailbox: str
    booking_resource_id: str
    body: EventBody
    transaction_id: str
    tag: str
    generation: int
    lookup_first: bool = False

    @property
    def event(self) -> EventWrite:
        return self.body.to_graph()

    @property
    def field_hashes(self) -> dict[str, str]:
        return self.body.field_hashes()


@dataclass(frozen=True, slots=True)
class Update:
    """PATCH only `changed` fields; `recreate` is the create to run if the event is gone (404)."""

    mailbox: str
    booking_resource_id: str
    graph_event_id: str
    body: EventBody
    changed: tuple[str, ...]
    recreate: Create

    @property
    def changes(self) -> EventWrite:
        return self.body.fields(self.changed)

    @property
    def field_hashes(self) -> dict[str, str]:
        """The hashes to store after the PATCH: the whole new body's, not just the changed ones."""
        return self.body.field_hashes()


@dataclass(frozen=True, slots=True)
class Delete:
    """DELETE the event; without `graph_event_id`, every event tagged `tag` in the mailbox."""

    mailbox: str
    booking_resource_id: str
    graph_event_id: str | None
    tag: str
    reason: DeleteReason


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing to send; `mailbox` is None for an employee that is not mapped."""

    booking_resource_id: str
    mailbox: str | None
    reason: SkipReason


Action = Create | Update | Delete | Skip


def plan(
    appointment: Mapping[str, Any],
    *,
    organization_id: str,
    employees: Mapping[str, str],
    mappings: Sequence[MappingState],
    settings: TranslationSettings,
    canceled: bool | None = None,
    force: bool = False,
) -> list[Action]:
    """The actions that make Outlook match `appointment`.

    `employees` maps the connection's booking resource ids to mailboxes; `mappings` are this
    appointment's stored rows (all mailboxes, tombstones included); `canceled` overrides the
    payload's flag. `force` (a resync) sends every field of an existing event, not only the changed
    ones, so edits made in Outlook are overwritten and a deleted event comes back (the PATCH's 404
    re-creates it). Raises InvalidAppointment for a payload that cannot be planned (no id; no
    bookingResourceList while not canceled; bad times when an event must be written).

    Executor contract (DESIGN.md "Exactly one Outlook event per appointment and mailbox"):
    - Never hold a transaction open across a Graph call. Actions of one plan are independent
      across mailboxes; within one employee the Deletes come first, keep that order.
    - Create: first persist the row (mailbox, generation, no graph_event_id) and commit; then
      POST `event` with `transaction_id` and `tag` (GraphClient.create_event); then store the
      event id, iCalUId, changeKey and `field_hashes`. If the outcome is unknown (timeout, crash),
      the row stays without an id and the next plan returns the same Create with
      `lookup_first=True` and the same generation and transactionId. With `lookup_first`, call
      `find_events_by_tag(mailbox, tag)` first: none → POST as above; found → adopt one (delete
      any further ones), PATCH it with the whole `event` (the appointment may have changed since
      the lost create) and store it as if created.
    - Update: PATCH `changes` (GraphClient.update_event), then store `field_hashes` and the new
      changeKey. A 404 means the event was deleted in Outlook: run `recreate` (a new generation,
      so a new transactionId), replacing the row's generation and ids.
    - Delete: DELETE `graph_event_id`; a 404 is success. Without an id (a create of unknown
      outcome), delete every event `find_events_by_tag(mailbox, tag)` returns. Then mark the row
      `deleted` (keep it: its generation must not be reused) rather than removing it.
    - Skip: no Graph call. Record `unmapped` once per employee, not on every delivery.
    """
    appointment_id = appointment.get("id")
    if not isinstance(appointment_id, str) or not appointment_id:
        raise InvalidAppointment("appointment_id_missing")
    if canceled is None:
        canceled = appointment.get("canceled") is True
    resources = appointment.get("bookingResourceList")
    if not isinstance(resources, list) and not canceled:
        # A payload without the list is not "no employees": deleting every event on it would
        # turn one malformed delivery into data loss.
        raise InvalidAppointment("appointment_resources_missing")
    listed = listed_employees(resources)
    deleting = canceled and settings.on_cancel == "delete"

    rows: dict[str, list[MappingState]] = {}
    for row in mappings:
        rows.setdefault(row.booking_resource_id, []).append(row)
    body: EventBody | None = None
    actions: list[Action] = []
    for resource in [*listed, *(r for r in rows if r not in listed)]:
        own = rows.get(resource, [])
        tag = appointment_tag(organization_id, appointment_id, resource)
        target = employees.get(resource) if resource in listed and not deleting else None
        live = [row for row in own if not row.deleted]
        current = _current(live, target)
        reason: DeleteReason = (
            "canceled"
            if deleting
            else "removed"
            if resource not in listed
            else "unmapped"
            if resource not in employees
            else "mailbox_changed"
        )
        for row in live:
            if row is not current:
                gone: DeleteReason = "duplicate" if current is not None else reason
                actions.append(Delete(row.mailbox, resource, row.graph_event_id, tag, gone))
        if resource in listed and resource not in employees:
            actions.append(Skip(resource, None, "unmapped"))
        if target is None or (canceled and current is None):
            if canceled and resource in listed and resource in employees and not live:
                actions.append(Skip(resource, employees[resource], "canceled"))
            continue

        if body is None:
            body = translate(appointment, settings, canceled=canceled)
        next_generation = max((row.generation for row in own), default=0) + 1

        # A create of unknown outcome is retried as itself (same generation, same transactionId);
        # any other create, the re-create after an update's 404 included, is a new generation.
        generation, lookup_first = next_generation, False
        if current is not None and current.graph_event_id is None:
            generation, lookup_first = current.generation, True
        txid = transaction_id(organization_id, appointment_id, resource, generation)
        fresh = Create(target, resource, body, txid, tag, generation, lookup_first)
        if current is None or current.graph_event_id is None:
            actions.append(fresh)
            continue
        if current.detached:
            actions.append(Skip(resource, target, "detached"))
            continue
        stored = current.field_hashes
        changed = tuple(
            name for name, h in body.field_hashes().items() if force or stored.get(name) != h
        )
        if changed:
            actions.append(Update(target, resource, current.graph_event_id, body, changed, fresh))
        else:
            actions.append(Skip(resource, target, "unchanged"))
    return actions


def listed_employees(resources: Any) -> list[str]:
    """The appointment's employee ids, in order, once each (rooms and other resources aside)."""
    # A dict keeps the order and makes "once each" a hash lookup, not a scan of the list.
    listed: dict[str, None] = {}
    for item in resources if isinstance(resources, list) else []:
        if not isinstance(item, Mapping) or str(item.get("type", "")).upper() != "EMPLOYEE":
            continue
        resource = item.get("id")
        if isinstance(resource, str) and resource:
            listed[resource] = None
    return list(listed)


def _current(live: list[MappingState], target: str | None) -> MappingState | None:
    """The row to keep for the target mailbox: one with a Graph event, the newest generation."""
    if target is None:
        return None
    candidates = [row for row in live if _same_mailbox(row.mailbox, target)]
    return max(
        candidates,
        key=lambda row: (row.graph_event_id is not None, row.generation),
        default=None,
    )


def _same_mailbox(a: str, b: str) -> bool:
    # Addresses are case-insensitive: re-typing "Max@Firma.de" must not move the event.
    return a.strip().casefold() == b.strip().casefold()
