"""The subscription admin API: list (filter, pages), create or recreate, renew, delete, with
problem documents for every refusal."""

from __future__ import annotations

import pytest

from app.graph.errors import Transient
from app.notifications.tasks import SUBSCRIPTION_DELETE, SUBSCRIPTION_ENSURE, SUBSCRIPTION_RENEW
from tests.helpers import assert_problem
from tests.notifications.subs_helpers import (
    ERIKA,
    ERIKA_MAILBOX,
    MAX,
    MAX_MAILBOX,
    ORG,
    World,
    subs_world,
)
from tests.world import MakeWorld


async def test_list_filter_and_pages(world: World) -> None:
    await world.employ(ERIKA, ERIKA_MAILBOX)
    await world.ensure()
    await world.ensure(ERIKA_MAILBOX)
    listed = await world.http.get("/api/v1/subscriptions")
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [i["mailbox"] for i in items] == [ERIKA_MAILBOX, MAX_MAILBOX]  # newest first
    first = items[1]
    assert first["organization_id"] == ORG and first["state"] == "active"
    assert first["expires_at"] is not None and first["last_notification_at"] is None
    assert "client_state" not in str(listed.json()) and "clientState" not in listed.text

    page = await world.http.get("/api/v1/subscriptions", params={"limit": 1})
    assert [i["mailbox"] for i in page.json()["items"]] == [ERIKA_MAILBOX]
    cursor = page.json()["next_cursor"]
    rest = await world.http.get("/api/v1/subscriptions", params={"limit": 1, "cursor": cursor})
    assert [i["mailbox"] for i in rest.json()["items"]] == [MAX_MAILBOX]
    assert rest.json()["next_cursor"] is None

    mine = await world.http.get("/api/v1/subscriptions", params={"organization_id": ORG})
    assert len(mine.json()["items"]) == 2
    unknown = await world.http.get("/api/v1/subscriptions", params={"organization_id": "f6Nobody"})
    assert_problem(unknown, 404, "connection_not_found")
    assert_problem(
        await world.http.get("/api/v1/subscriptions", params={"cursor": "garbage!"}),
        400,
        "invalid_cursor",
    )
    anonymous = await world.http.get("/api/v1/subscriptions", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_create_then_recreate(world: World) -> None:
    url = f"/api/v1/connections/{ORG}/employees/{MAX}/subscription"
    created = await world.http.post(url)
    assert created.status_code == 202, created.text
    assert created.json()["action"] == "create" and created.json()["queued"] is True
    (job,) = await world.jobs(SUBSCRIPTION_ENSURE)
    assert "recreate" not in job.args
    await world.ensure()
    await world.clear_jobs()

    again = await world.http.post(url)
    assert again.status_code == 202 and again.json()["action"] == "recreate"
    (job,) = await world.jobs(SUBSCRIPTION_ENSURE)
    assert job.args["recreate"] is True
    assert (await world.http.post(url)).json()["queued"] is False  # already waiting

    assert_problem(
        await world.http.post(f"/api/v1/connections/{ORG}/employees/brNobody/subscription"),
        404,
        "employee_not_found",
    )


async def test_renew_and_delete(world: World) -> None:
    await world.ensure()
    row = await world.subscription()
    assert row is not None
    await world.clear_jobs()

    renewed = await world.http.post(f"/api/v1/subscriptions/{row.id}/renew")
    assert renewed.status_code == 202, renewed.text
    (job,) = await world.jobs(SUBSCRIPTION_RENEW)
    assert job.args == {"connection_id": world.connection_id, "mailbox": MAX_MAILBOX}
    assert_problem(
        await world.http.post("/api/v1/subscriptions/999999/renew"), 404, "subscription_not_found"
    )

    deleted = await world.http.delete(f"/api/v1/subscriptions/{row.id}")
    assert deleted.status_code == 204
    assert await world.subscription() is None
    (job,) = await world.jobs(SUBSCRIPTION_DELETE)
    assert job.args["graph_subscription_id"] == row.graph_subscription_id
    assert_problem(
        await world.http.delete(f"/api/v1/subscriptions/{row.id}"), 404, "subscription_not_found"
    )


async def test_renew_of_a_pending_subscription_is_refused(world: World) -> None:
    world.control.faults.add("503", count=1, path=r"/v1\.0/subscriptions$")
    with pytest.raises(Transient):
        await world.ensure()
    row = await world.subscription()
    assert row is not None and row.state == "pending"
    assert_problem(
        await world.http.post(f"/api/v1/subscriptions/{row.id}/renew"),
        409,
        "subscription_not_active",
    )


async def test_without_public_url_creation_is_refused(make_world: MakeWorld) -> None:
    async with subs_world(make_world, public_url=None) as offline:
        response = await offline.http.post(
            f"/api/v1/connections/{ORG}/employees/{MAX}/subscription"
        )
        body = assert_problem(response, 409, "subscriptions_disabled")
        assert "CALBRIDGE_PUBLIC_URL" in str(body["detail"])


async def test_openapi_documents_the_endpoints(world: World) -> None:
    schema = (await world.http.get("/openapi.json")).json()
    paths = schema["paths"]
    assert paths["/api/v1/subscriptions"]["get"]["summary"] == "List subscriptions"
    assert "409" in paths["/api/v1/subscriptions/{subscription_id}/renew"]["post"]["responses"]
    assert "/webhooks/graph/notifications" in paths and "/webhooks/graph/lifecycle" in paths
    employee = schema["components"]["schemas"]["EmployeeOut"]["properties"]
    assert "subscription" in employee
