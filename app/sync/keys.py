"""Deterministic identities of calbridge's events: the appointment tag stored in the event's
extended property (`app.graph.TAG_PROPERTY_ID`) and the `transactionId` of each create.
"""

from __future__ import annotations

import uuid

#: calbridge's uuid5 namespace for transactionIds. Never change it (nor the name format below):
#: a retried create must carry the transactionId of the first attempt, across releases too.
TRANSACTION_NAMESPACE = uuid.UUID("3498445f-2338-43e3-b7ee-7c757a3fa14f")


def appointment_tag(organization_id: str, appointment_id: str, booking_resource_id: str) -> str:
    """The appointment key tagging the event of one employee: the same in every generation."""
    return f"{organization_id}:{appointment_id}:{booking_resource_id}"


def transaction_id(
    organization_id: str, appointment_id: str, booking_resource_id: str, generation: int
) -> str:
    """uuid5 of the tag and the generation: a new generation (re-create, moved mailbox) gets a
    new id, a retry of the same create the same one."""
    if generation < 1:
        raise ValueError("generation starts at 1")
    tag = appointment_tag(organization_id, appointment_id, booking_resource_id)
    return str(uuid.uuid5(TRANSACTION_NAMESPACE, f"{tag}:{generation}"))
