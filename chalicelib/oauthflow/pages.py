"""What the browser gets at the end of a consent: a redirect to the tenant's return URL with
`mailbox_id` and `outcome` added to its query, or a small result page (escaped; no scripts, no external
resources, `Referrer-Policy: no-referrer` so the callback URL with its code never leaks)."""
from __future__ import annotations

import html
from urllib.parse import urlencode

from chalicelib.oauthflow.service import ConsentResult

SECURITY_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                    "X-Content-Type-Options": "nosniff"}
TITLES = {"connected": "Mailbox connected", "admin_consented": "The administrator approved the app",
          "denied": "Access was not granted",
          "wrong_account": "Wrong account", "needs_admin_consent": "An administrator must approve the app",
          "exchange_failed": "The connection could not be completed",
          "invalid_state": "This link is invalid or has expired"}
HINTS = {"wrong_account": "Sign in with the mailbox's own address and try again.",
         "admin_consented": "The mailbox's owner can now connect it with a new connection link.",
         "needs_admin_consent": "Ask an administrator to open the admin-consent link the mailbox now offers.",
         "invalid_state": "Ask for a new connection link.",
         "denied": "Grant every requested permission to connect the mailbox.",
         "exchange_failed": "Try again with a new connection link."}


def callback_response(result: ConsentResult) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) for the browser."""
    if result.return_url:
        query = {"outcome": result.outcome}
        if result.mailbox_id:
            query = {"mailbox_id": result.mailbox_id, **query}
        separator = "&" if "?" in result.return_url else "?"
        return 302, {**SECURITY_HEADERS, "Location": f"{result.return_url}{separator}{urlencode(query)}"}, ""
    title = TITLES.get(result.outcome, "Connection result")
    hint = HINTS.get(result.outcome, "You can close this window.")
    body = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto}}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(hint)}</p>"
            f"<p><small>outcome: <code>{html.escape(result.outcome)}</code></small></p></body></html>")
    status = 200 if result.outcome in ("connected", "admin_consented") else 400
    return status, {**SECURITY_HEADERS, "Content-Type": "text/html; charset=utf-8"}, body
