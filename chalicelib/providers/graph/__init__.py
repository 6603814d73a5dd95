"""Microsoft 365 mailboxes through Microsoft Graph (kind "outlook"): client, errors, MSAL tokens, adapter,
subscriptions, consent. Registered in providers/kinds.py; msal loads only when an outlook provider is built."""
