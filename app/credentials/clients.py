"""The process's Graph plumbing for sync jobs: its HTTP clients, one AuthRegistry (MSAL
token caches) and one MailboxLimiter, and a GraphClient per connection built on them."""

from __future__ import annotations

import functools

from pydantic import SecretStr

from app.config import Settings
from app.crypto import SecretBox
from app.graph.auth import AuthRegistry, GraphCredentials, build_msal_http_client
from app.graph.client import GraphClient
from app.graph.limits import MailboxLimiter
from app.graph.sender import GraphHttp
from app.models import Connection


class GraphClients:
    """Built once per process (per settings); `client_for` is cheap and reuses token caches."""

    def __init__(self, settings: Settings, *, limiter: MailboxLimiter | None = None) -> None:
        self.settings = settings
        self.http = GraphHttp.build(settings)
        self.auth = AuthRegistry(
            authority_host=settings.authority_host,
            graph_url=settings.graph_url,
            http_client=build_msal_http_client(settings.ca_bundle),
        )
        self.limiter = limiter or MailboxLimiter()

    def client_for(self, connection: Connection, secret_box: SecretBox) -> GraphClient:
        credentials = GraphCredentials(
            tenant=connection.tenant,
            client_id=connection.client_id,
            client_secret=_client_secret(secret_box, connection.client_secret_encrypted),
        )
        return GraphClient(
            self.http,
            self.auth.auth(credentials),
            graph_url=self.settings.graph_url,
            limiter=self.limiter,
        )

    async def aclose(self) -> None:
        await self.http.aclose()
        self.auth.close()


@functools.lru_cache(maxsize=1024)
def _client_secret(secret_box: SecretBox, ciphertext: str) -> SecretStr:
    # Every job builds its connection's client, so the secret is decrypted once, not per job. A
    # changed secret is a new ciphertext, so it is never served stale.
    return SecretStr(secret_box.decrypt(ciphertext))
