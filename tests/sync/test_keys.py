"""Deterministic ids: the appointment tag and the transactionId of each create."""

from __future__ import annotations

import uuid

import pytest

from app.sync.keys import TRANSACTION_NAMESPACE, appointment_tag, transaction_id


def test_namespace_never_changes() -> None:
    assert uuid.UUID("3498445f-2338-43e3-b7ee-7c757a3fa14f") == TRANSACTION_NAMESPACE
    # Pinned value: a change here would make retried creates after an upgrade duplicate events.
    assert transaction_id("f6", "ed", "br", 1) == str(
        uuid.uuid5(TRANSACTION_NAMESPACE, "f6:ed:br:1")
    )


def test_transaction_id_is_deterministic_and_differs_per_part() -> None:
    base = transaction_id("f6A", "edA", "brA", 1)
    assert base == transaction_id("f6A", "edA", "brA", 1)
    assert uuid.UUID(base).version == 5
    others = {
        transaction_id("f6A", "edA", "brA", 2),
        transaction_id("f6A", "edA", "brB", 1),
        transaction_id("f6A", "edB", "brA", 1),
        transaction_id("f6B", "edA", "brA", 1),
    }
    assert len(others) == 4
    assert base not in others


def test_generation_starts_at_one() -> None:
    with pytest.raises(ValueError):
        transaction_id("f6", "ed", "br", 0)


def test_tag_is_the_appointment_key_without_generation() -> None:
    assert appointment_tag("f6A", "edA", "brA") == "f6A:edA:brA"
