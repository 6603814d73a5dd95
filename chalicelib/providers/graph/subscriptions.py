"""Graph change-notification subscriptions for one mailbox: one per synced folder (`created` messages).

learn.microsoft.com "Set up notifications for changes in resource data", "subscription resource type",
"Reduce missing subscriptions and change notifications" (lifecycle notifications):
- `POST /subscriptions` {changeType, notificationUrl, lifecycleNotificationUrl, resource, expirationDateTime,
  clientState}; Graph validates both URLs first (validation handshake) and answers 201 with the id.
- Outlook message subscriptions live at most 4,230 minutes; `PATCH /subscriptions/{id}` {expirationDateTime}
  renews, `DELETE` removes, `POST /subscriptions/{id}/reauthorize` answers a `reauthorizationRequired`.
- `clientState` (≤ 128 characters) comes back in every notification; it is a random secret stored sealed with
  the mailbox's credentials (`PushState.secrets`), and its SHA-256 is the mailbox's `push_key` (the push
  endpoint's lookup key; a hash of a 256-bit random value reveals nothing).
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from chalicelib.logs import logger
from chalicelib.providers.base import ErrorCode, ProviderError, PushState
from chalicelib.timeutil import isoformat, utcnow

if TYPE_CHECKING:   # an annotation only: the push endpoint reads push_key without loading requests
    from chalicelib.providers.graph.client import GraphClient

MAX_MINUTES = 4230
LIFETIME = timedelta(minutes=MAX_MINUTES - 30)      # margin for clock skew between us and Graph
CLIENT_STATE_KEY = "graph_client_state"


def push_key(client_state: str) -> str:
    return "graph#" + hashlib.sha256(client_state.encode()).hexdigest()


def _expiry() -> str:
    return isoformat(utcnow() + LIFETIME)


class GraphSubscriptions:
    def __init__(self, client: GraphClient, *, folders: dict[str, str], notification_url: str,
                 lifecycle_url: str):
        self.client, self.folders = client, folders            # logical folder → Graph well-known name
        self.notification_url, self.lifecycle_url = notification_url, lifecycle_url

    def start(self) -> PushState:
        client_state = secrets.token_urlsafe(32)
        expires = _expiry()
        created: dict[str, str] = {}
        try:
            for logical, graph_folder in self.folders.items():
                body = {"changeType": "created", "notificationUrl": self.notification_url,
                        "lifecycleNotificationUrl": self.lifecycle_url,
                        "resource": f"me/mailFolders('{graph_folder}')/messages", "expirationDateTime": expires,
                        "clientState": client_state, "latestSupportedTlsVersion": "v1_2"}
                response = self.client.request("POST", "subscriptions", json=body, what="subscription create")
                created[logical] = str(response.json()["id"])
        except ProviderError:
            self._delete(created.values())
            raise
        return PushState(expires_at=expires, resource={"subscriptions": created, "push_key": push_key(client_state)},
                         secrets={CLIENT_STATE_KEY: client_state})

    def renew(self, state: PushState) -> PushState:
        """PATCH every subscription's expiry; when one is gone at Graph, start afresh (new clientState)."""
        expires = _expiry()
        subscriptions = dict((state.resource or {}).get("subscriptions") or {})
        if set(subscriptions) != set(self.folders):
            self.stop(state)
            return self.start()
        for sub_id in subscriptions.values():
            try:
                self.client.request("PATCH", f"subscriptions/{sub_id}", json={"expirationDateTime": expires},
                                    what="subscription renew")
            except ProviderError as exc:
                if exc.code != ErrorCode.NOT_FOUND:
                    raise
                logger.info("subscription gone at Graph; re-subscribing")
                self.stop(state)
                return self.start()
        return PushState(expires_at=expires, resource=dict(state.resource), secrets=None)

    def reauthorize(self, subscription_id: str) -> None:
        self.client.request("POST", f"subscriptions/{subscription_id}/reauthorize", what="subscription reauthorize")

    def stop(self, state: PushState) -> None:
        self._delete(((state.resource or {}).get("subscriptions") or {}).values())

    def _delete(self, ids) -> None:
        for sub_id in list(ids):
            try:
                self.client.request("DELETE", f"subscriptions/{sub_id}", what="subscription delete")
            except ProviderError as exc:
                if exc.code != ErrorCode.NOT_FOUND:
                    raise
