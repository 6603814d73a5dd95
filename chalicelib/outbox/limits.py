"""The documented limits of a send (docs/api.md, "Sending mail"), in a module of their own: the API's request
models check the recipient count while validating a send (`api/schemas/outbox.py`) without loading the outbox
service and its MIME composition on the API's cold start (`chalicelib/lazy.py`), and the send route declares its
body limit without loading the request models (`api/blueprints/outbox.py`); `service.py` enforces all of them
again on the composed message."""
from __future__ import annotations

from datetime import timedelta

MAX_SCHEDULE_AHEAD = timedelta(days=30)
MAX_ATTACHMENT_BYTES = 4 * 1024 * 1024   # decoded, one request's attachments together (docs/api.md)
MAX_MESSAGE_BYTES = 25 * 1024 * 1024     # the composed MIME incl. forwarded attachments
MAX_RECIPIENTS = 100                     # to + cc + bcc, also after reply_all added the original's recipients
MAX_SEND_BODY_BYTES = 6_000_000          # the request (Lambda's 6 MB synchronous payload limit)
