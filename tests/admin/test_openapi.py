"""The admin API's OpenAPI document: every operation summarised, secured, with problem answers."""

from __future__ import annotations

from typing import Any

import httpx

EXPECTED = {
    ("/api/v1/connections", "get"),
    ("/api/v1/connections/{organization_id}", "put"),
    ("/api/v1/connections/{organization_id}", "get"),
    ("/api/v1/connections/{organization_id}", "delete"),
    ("/api/v1/connections/{organization_id}/employees", "get"),
    ("/api/v1/connections/{organization_id}/employees/{employee_id}", "put"),
    ("/api/v1/connections/{organization_id}/employees/{employee_id}", "get"),
    ("/api/v1/connections/{organization_id}/employees/{employee_id}", "delete"),
    ("/api/v1/connections/{organization_id}/employees/{employee_id}/resync", "post"),
    ("/api/v1/sync-history", "get"),
}


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_admin_operations_are_documented(client: httpx.AsyncClient) -> None:
    document = await openapi(client)
    operations = {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) >= EXPECTED
    for key in EXPECTED:
        operation = operations[key]
        assert operation["summary"], key
        assert operation["security"] == [{"HTTPBearer": []}], key
        responses = operation["responses"]
        assert "application/problem+json" in responses["401"]["content"], key
        if operation.get("parameters") or operation.get("requestBody"):
            assert "application/problem+json" in responses["422"]["content"], key
        if "{organization_id}" in key[0] and key != (
            "/api/v1/connections/{organization_id}",
            "put",
        ):
            assert "404" in responses, key

    put = operations[("/api/v1/connections/{organization_id}", "put")]
    assert {"200", "201", "409", "422"} <= set(put["responses"])
    examples = put["requestBody"]["content"]["application/json"]["examples"]
    assert {"create", "authority_url", "rotate_secret", "event_settings"} <= set(examples)
    parameter = put["parameters"][0]
    assert parameter["name"] == "organization_id"
    assert parameter["schema"]["pattern"] == "^[A-Za-z0-9_-]+$"
    assert parameter["schema"]["maxLength"] == 64

    history = operations[("/api/v1/sync-history", "get")]
    names = {parameter["name"] for parameter in history["parameters"]}
    assert names == {
        "organization_id",
        "employee_id",
        "appointment_id",
        "status",
        "limit",
        "cursor",
        "accept-language",
    }
    assert "400" in history["responses"]

    employee = "/api/v1/connections/{organization_id}/employees/{employee_id}"
    delete = operations[(employee, "delete")]
    assert {"200", "202", "204"} <= set(delete["responses"])
    queries = [p["name"] for p in delete["parameters"] if p["in"] == "query"]
    assert queries[-1] == "remove_events"
    # Every endpoint that answers with readable text takes the language it is to be in.
    for key in (
        (employee, "delete"),
        (employee, "put"),
        (employee, "get"),
        (employee + "/resync", "post"),
        ("/api/v1/connections/{organization_id}/employees", "get"),
        ("/api/v1/connections/{organization_id}/verify", "post"),
        ("/api/v1/connections/{organization_id}", "put"),
        ("/api/v1/subscriptions", "get"),
        ("/api/v1/subscriptions/{subscription_id}/renew", "post"),
        (employee + "/subscription", "post"),
    ):
        headers = [p["name"] for p in operations[key]["parameters"] if p["in"] == "header"]
        assert headers == ["accept-language"], key
    assert {"202", "404"} <= set(operations[(employee + "/resync", "post")]["responses"])


async def test_schemas_have_examples_and_no_readable_secrets(client: httpx.AsyncClient) -> None:
    schemas = (await openapi(client))["components"]["schemas"]
    for name in ("ConnectionIn", "ConnectionOut", "ConnectionPutOut", "EmployeeIn", "EmployeeOut"):
        assert schemas[name].get("examples"), name
    assert any(name.startswith("Page") and "SyncRecordOut" in name for name in schemas)
    assert schemas["SyncRecordOut"]["examples"]
    assert "client_secret" not in schemas["ConnectionOut"]["properties"]
    assert "webhook_secret" not in schemas["ConnectionOut"]["properties"]
    secret = schemas["ConnectionIn"]["properties"]["client_secret"]
    assert "write-only" in secret["description"].lower()
    tenant = schemas["ConnectionIn"]["properties"]["tenant"]
    assert "login.microsoftonline.com" in tenant["description"]
    assert len(tenant["examples"]) == 3


async def test_docs_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()
