"""OAuth consent (connecting a Gmail / Microsoft 365 mailbox), shared by every OAuth kind.

- `state`: the signed, expiring (10 min), single-use `state` bound to tenant + mailbox (RFC 6749 §10.12 CSRF
  protection); the flow's pending data (PKCE verifier, MSAL flow) is sealed server-side with it.
- `flows`: the `ConsentFlow` protocol each kind implements (`begin` → authorize URL, `complete` → secrets) and
  their registry (modules load lazily, so provider libraries stay off the API's cold start).
- `service`: begin a consent for a mailbox; complete a callback — store secrets, activate, start push, queue
  the first import — and say where to send the browser.
"""
