"""The per-kind consent flow protocol and its registry.

Outcomes of a failed consent (`ConsentFailed.outcome`): "denied" (the user refused, or did not grant every
scope), "wrong_account" (they consented with another account than the mailbox's address), "needs_admin_consent"
(Microsoft: an administrator must approve the app), "exchange_failed" (the token endpoint refused the code or
gave no refresh token), "invalid_state" (forged, replayed or expired state).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.credentials.tokens import AccessToken
from chalicelib.lazy import resolve
from chalicelib.models.mailbox import Mailbox, MailServer

OUTCOMES = ("connected", "admin_consented", "denied", "wrong_account", "needs_admin_consent", "exchange_failed",
            "invalid_state")


@dataclass(frozen=True)
class Begun:
    authorize_url: str
    pending: dict[str, Any] = field(repr=False)      # sealed server-side, never sent to the browser


@dataclass(frozen=True)
class Granted:
    """What a completed consent hands the service: the secrets to store, the account, and — when the flow's
    exchange returned one — the access token, kept warm for this process (`tokens.remember_granted_token`)."""
    secrets: dict[str, str] = field(repr=False)
    account_email: str
    access_token: AccessToken | None = field(default=None, repr=False)


class ConsentFailed(Exception):
    def __init__(self, outcome: str, detail: str = ""):
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown consent outcome {outcome!r}")
        super().__init__(f"{outcome}: {detail}" if detail else outcome)
        self.outcome, self.detail = outcome, detail


class BeginFailed(Exception):
    """The provider could not start a consent: `temporary` when it could not be reached (try again later), else
    it refused the app's settings (e.g. Microsoft knows no tenant of the mail server's `ms_tenant`)."""

    def __init__(self, detail: str, *, temporary: bool):
        super().__init__(detail)
        self.detail, self.temporary = detail, temporary


class ConsentFlow(Protocol):
    kind: str

    def begin(self, *, mailbox: Mailbox, server: MailServer, client_secret: str, redirect_uri: str,
              state: str) -> Begun:
        """The authorize URL; raises `BeginFailed` when the provider cannot be asked for one."""

    def complete(self, *, mailbox: Mailbox, server: MailServer, client_secret: str, redirect_uri: str,
                 pending: dict, params: dict[str, str]) -> Granted: ...


_FLOWS: dict[str, str] = {"gmail": "chalicelib.oauthflow.gmail:GmailConsent",
                          "outlook": "chalicelib.providers.graph.consent:OutlookConsent"}


def register_flow(kind: str, target: str) -> None:
    """`target` = "package.module:Class", imported when a consent of that kind begins or completes
    (`chalicelib.lazy.resolve`: the Google and Microsoft SDKs stay off the API's cold start)."""
    _FLOWS[kind] = target


def get_flow(kind: str) -> ConsentFlow:
    try:
        target = _FLOWS[kind]
    except KeyError:
        raise ConsentFailed("invalid_state", f"no consent flow for kind {kind!r}") from None
    return resolve(target)()
