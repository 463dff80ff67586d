"""BatchSender: Graph's `$batch`, requests for one mailbox sent 20 at a time, each item's answer
classified like a single call's and returned rather than raised."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app import counters
from app.graph.errors import GraphError, Target, Transient, error_from_parts
from app.graph.odata import prefer_timezone
from app.graph.schemas import BatchItemResult, BatchRequest
from app.graph.sender import PREFER_IMMUTABLE_ID, GraphSender

MAX_BATCH = 20


class BatchSender(GraphSender):
    """GraphSender with `$batch`; GraphClient builds its calls on it."""

    async def batch(
        self, mailbox: str, requests: Sequence[BatchRequest], *, target: Target = "event"
    ) -> dict[str, BatchItemResult]:
        """Send requests for one mailbox in `$batch`es of at most 20; results keyed by id.

        Each item's failure is classified like a single call (its own status, headers, body)
        and returned, not raised; a failure of a whole batch raises.
        """
        ids = [request.id.lower() for request in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("batch request ids must be unique (Graph compares them ignoring case)")
        key = self.mailbox_key(mailbox)
        results: dict[str, BatchItemResult] = {}
        for offset in range(0, len(requests), MAX_BATCH):
            chunk = requests[offset : offset + MAX_BATCH]
            response, cid = await self._send(
                "POST",
                self._url("/$batch"),
                target="batch",
                mailbox=mailbox,
                json={"requests": [self._batch_item(request) for request in chunk]},
            )
            by_id = {
                str(item.get("id", "")).lower(): item
                for item in response.json().get("responses", [])
                if isinstance(item, dict)
            }
            for request in chunk:
                item = by_id.get(request.id.lower())
                results[request.id] = self._batch_result(request, item, key, target, mailbox, cid)
        return results

    def _batch_item(self, request: BatchRequest) -> dict[str, Any]:
        prefer = [PREFER_IMMUTABLE_ID]
        if request.method in ("GET", "POST", "PATCH"):
            prefer.append(prefer_timezone(self.timezone))
        headers = {"Prefer": ", ".join(prefer), **request.headers}
        item: dict[str, Any] = {"id": request.id, "method": request.method, "url": request.url}
        if request.body is not None:
            headers.setdefault("Content-Type", "application/json")
            item["body"] = request.body
        item["headers"] = headers
        return item

    def _batch_result(
        self,
        request: BatchRequest,
        item: Mapping[str, Any] | None,
        key: str,
        target: Target,
        mailbox: str,
        client_request_id: str,
    ) -> BatchItemResult:
        if item is None:
            missing = Transient(
                "Graph returned no response for this batch item",
                code="missingBatchResponse",
                client_request_id=client_request_id,
            )
            return BatchItemResult(id=request.id, status=0, headers={}, body=None, error=missing)
        status = int(item.get("status", 0))
        headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
        body = item.get("body")
        error: GraphError | None = None
        counters.graph_batch_item(status)
        if not 200 <= status < 300:
            self._note_throttle(key, status, headers)
            error = error_from_parts(
                status,
                headers,
                body,
                target=target,
                mailbox=mailbox,
                client_request_id=client_request_id,
                now=self.limiter.clock(),
            )
        return BatchItemResult(
            id=request.id, status=status, headers=headers, body=body, error=error
        )
