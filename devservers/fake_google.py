"""A fake Google on loopback: OAuth 2.0 (authorize + token), the Gmail API v1 subset mailbridge uses, the
multipart batch endpoint and the certs endpoint that publishes the keys of Pub/Sub push tokens.

It speaks the documented wire format, so the real `google-api-python-client` and `google-auth` drive it:
- OAuth 2.0 for web server apps (developers.google.com/identity/protocols/oauth2/web-server): `GET
  /o/oauth2/v2/auth` answers 302 to `redirect_uri` with `code` and `state` (or `error=access_denied`);
  `POST /token` takes `authorization_code` (PKCE S256, RFC 7636 §4.6) and `refresh_token` grants, answers
  RFC 6749 §5.2 errors (`invalid_grant` for a revoked grant) and returns a refresh token only when the consent
  screen was shown (`prompt=consent`).
- Gmail API reference (developers.google.com/gmail/api/reference/rest): `users.getProfile`, `messages.list`
  (`q` with `after:`, `in:`/`-in:` and `rfc822msgid:`, `labelIds`, `pageToken`), `messages.get` (`format=raw`,
  base64url),
  `history.list` (`startHistoryId`, `labelId`, `historyTypes`; 404 for a historyId older than the retained history),
  `users.watch`/`users.stop`, `messages.send`, `labels.list` (system labels and the user labels made with
  `add_label`); error bodies in Google's JSON error format.
- Batch (developers.google.com/gmail/api/guides/batch): `POST /batch/gmail/v1` with `multipart/mixed` parts of
  `application/http`; each part is answered on its own (a vanished id → that part's 404).
- `GET /oauth2/v1/certs`: `{kid: PEM certificate}` as www.googleapis.com/oauth2/v1/certs serves them; the key
  is generated at start-up (`sign_push_token` signs RS256 tokens with it) and never stored.

Switches for tests: `deny` (consent denied), `consent_as` (the user logs in as another account),
`withhold_scopes` (granular consent: the user unticks these; the token answer's `scope` lacks them),
`fail(endpoint, status, reason=, retry_after=, times=, after=)` (429 / 403 rateLimitExceeded / 500 …;
"messages.get:raw" or "messages.get:minimal" aims at one format; `after` answers the error once the call took
effect), `revoke()`, `rotate_refresh_tokens`, `forget_history()` (stale
historyIds → 404). `calls[endpoint]` counts requests (batch parts too); `gets[format]` the messages.get ones.

`python -m devservers.fake_google` (`make demo-gmail`) runs it with a demo account (`devservers/gmail_demo.py`).
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.parser import BytesParser
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

GMAIL_PREFIX = "/gmail/v1/users/"
ISSUERS = ("https://accounts.google.com", "accounts.google.com")
WATCH_SECONDS = 7 * 24 * 3600          # users.watch: "expiration" ~ 7 days later (Gmail push guide)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _error_body(status: int, message: str, reason: str, grpc_status: str) -> dict:
    return {"error": {"code": status, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}],
                      "status": grpc_status}}


ERRORS = {
    400: ("badRequest", "INVALID_ARGUMENT"), 401: ("authError", "UNAUTHENTICATED"),
    403: ("rateLimitExceeded", "PERMISSION_DENIED"), 404: ("notFound", "NOT_FOUND"),
    429: ("rateLimitExceeded", "RESOURCE_EXHAUSTED"), 500: ("backendError", "INTERNAL"),
    503: ("backendError", "UNAVAILABLE"),
}


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


def api_error(status: int, message: str, reason: str | None = None, retry_after: float | None = None) -> Reply:
    default_reason, grpc_status = ERRORS.get(status, ("backendError", "UNKNOWN"))
    headers = {"Content-Type": "application/json; charset=UTF-8"}
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after))
    return Reply(status, _error_body(status, message, reason or default_reason, grpc_status), headers)


SYSTEM_LABELS = ("INBOX", "SENT", "UNREAD", "STARRED", "IMPORTANT", "TRASH", "SPAM", "DRAFT")


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    labels: set[str]
    internal_ms: int
    history_id: int


@dataclass
class Account:
    email: str
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)       # {"id": n, kind: [...]} in order
    history_id: int = 1000
    oldest_history_id: int = 1000
    watch: dict | None = None
    labels: dict[str, str] = field(default_factory=dict)    # user labels: id → name (users.labels)


class FakeGoogle:
    """State and switches of the fake; `start()` serves it on 127.0.0.1 (port 0 = any free port)."""

    def __init__(self, port: int = 0, *, client_id: str = "fake-client-id.apps.googleusercontent.com",
                 client_secret: str = "fake-client-secret"):
        self.clients = {client_id: client_secret}
        self.client_id, self.client_secret = client_id, client_secret
        self.accounts: dict[str, Account] = {}
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: dict[str, dict] = {}
        self.access_tokens: dict[str, dict] = {}
        self.calls: Counter[str] = Counter()
        self.gets: Counter[str] = Counter()            # messages.get by format ("raw", "minimal")
        self.requests: list[tuple[str, dict]] = []        # (endpoint, query/body params) in order
        self.sent: list[dict] = []
        self.deny = False
        self.consent_as: str | None = None
        self.withhold_scopes: set[str] = set()     # granular consent: scopes the user unticks
        self.rotate_refresh_tokens = False
        self.access_token_seconds = 3600
        self._failures: dict[str, list[Reply]] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(0x18c0000000000000)
        self._key, self._cert_pem, self.key_id = _make_signing_key()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def auth_uri(self) -> str:
        return self.root + "o/oauth2/v2/auth"

    @property
    def token_uri(self) -> str:
        return self.root + "token"

    @property
    def certs_uri(self) -> str:
        return self.root + "oauth2/v1/certs"

    def environment(self) -> dict[str, str]:
        """The MAILBRIDGE_* settings that point mailbridge at this fake."""
        return {"MAILBRIDGE_GOOGLE_AUTH_URI": self.auth_uri, "MAILBRIDGE_GOOGLE_TOKEN_URI": self.token_uri,
                "MAILBRIDGE_GMAIL_API_ROOT": self.root, "MAILBRIDGE_GOOGLE_CERTS_URI": self.certs_uri}

    def start(self) -> "FakeGoogle":
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-google", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeGoogle":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- test controls ----------------------------------------------------------------------------------
    def add_account(self, email: str) -> Account:
        with self._lock:
            return self.accounts.setdefault(email.lower(), Account(email.lower()))

    def deliver(self, email: str, raw: bytes, *, labels: tuple[str, ...] = ("INBOX", "UNREAD"),
                thread_id: str | None = None, received: datetime | None = None) -> str:
        """A new message in the account (history: messageAdded); returns its id."""
        with self._lock:
            account = self.add_account(email)
            message_id = format(next(self._ids), "x")
            when = received or datetime.now(timezone.utc)
            history_id = self._bump(account)
            account.messages[message_id] = StoredMessage(message_id, thread_id or message_id, raw, set(labels),
                                                         int(when.timestamp() * 1000), history_id)
            account.history.append({"id": history_id,
                                    "messagesAdded": [{"message": self._ref(account.messages[message_id])}]})
            return message_id

    def add_label(self, email: str, name: str) -> str:
        """A user label (users.labels.create); returns its id ("Label_<n>", as Gmail makes them)."""
        with self._lock:
            account = self.add_account(email)
            label_id = f"Label_{len(account.labels) + 1}"
            account.labels[label_id] = name
            return label_id

    def change_labels(self, email: str, message_id: str, *, add: tuple[str, ...] = (),
                      remove: tuple[str, ...] = ()) -> None:
        with self._lock:
            account = self.accounts[email.lower()]
            message = account.messages[message_id]
            message.labels |= set(add)
            message.labels -= set(remove)
            message.history_id = history_id = self._bump(account)
            record: dict[str, Any] = {"id": history_id}
            if add:
                record["labelsAdded"] = [{"message": self._ref(message), "labelIds": list(add)}]
            if remove:
                record["labelsRemoved"] = [{"message": self._ref(message), "labelIds": list(remove)}]
            account.history.append(record)

    def delete(self, email: str, message_id: str, *, record_history: bool = True) -> None:
        """Permanent deletion (history: messageDeleted); `record_history=False` makes the id vanish only."""
        with self._lock:
            account = self.accounts[email.lower()]
            message = account.messages.pop(message_id)
            if record_history:
                history_id = self._bump(account)
                account.history.append({"id": history_id, "messagesDeleted": [{"message": self._ref(message)}]})

    def forget_history(self, email: str) -> None:
        """Google keeps history for a limited time: older startHistoryIds answer 404 from now on."""
        with self._lock:
            account = self.accounts[email.lower()]
            account.history.clear()
            account.oldest_history_id = self._bump(account)

    def fail(self, endpoint: str, status: int, *, reason: str | None = None, retry_after: float | None = None,
             times: int = 1, after: bool = False) -> None:
        """The next `times` calls of `endpoint` (e.g. "messages.get", "history.list", "token") answer `status`.
        `after`: the call takes effect first (e.g. `messages.send` sends) and only its answer is the error —
        a 500 that hides a success."""
        with self._lock:
            key = "after:" + endpoint if after else endpoint
            self._failures.setdefault(key, []).extend(
                [api_error(status, f"injected {status}", reason, retry_after)] * times)

    def revoke(self, email: str | None = None) -> None:
        """The user revoked access (or the grant expired): refresh → invalid_grant, access tokens → 401."""
        with self._lock:
            for grants in (self.refresh_tokens, self.access_tokens):
                for grant in grants.values():
                    if email is None or grant["email"] == email.lower():
                        grant["revoked"] = True

    def expire_access_tokens(self) -> None:
        with self._lock:
            for grant in self.access_tokens.values():
                grant["expires"] = 0

    def issue_refresh_token(self, email: str, client_id: str | None = None) -> str:
        """A refresh token as if the user had consented earlier (for tests that skip the consent dance)."""
        with self._lock:
            self.add_account(email)
            token = "1//fake-rt-" + secrets.token_urlsafe(24)
            self.refresh_tokens[token] = {"email": email.lower(), "client_id": client_id or self.client_id,
                                          "revoked": False, "scope": "https://www.googleapis.com/auth/gmail.readonly "
                                                                     "https://www.googleapis.com/auth/gmail.send"}
            return token

    def sign_push_token(self, claims: dict[str, Any] | None = None, *, key: Any = None,
                        key_id: str | None = None) -> str:
        """An RS256 OIDC token as Pub/Sub push puts it in `Authorization: Bearer` (defaults: valid for 1 h).
        `key` signs with another RSA key (a forgery)."""
        from google.auth import crypt, jwt
        from cryptography.hazmat.primitives import serialization
        now = int(time.time())
        body = {"iss": "https://accounts.google.com", "aud": "https://mailbridge.example/v1/push/gmail",
                "email": "push@project.iam.gserviceaccount.com", "email_verified": True, "iat": now,
                "exp": now + 3600, "sub": "1234567890"}
        body.update(claims or {})
        pem = (key or self._key).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())
        signer = crypt.RSASigner.from_string(pem, key_id or self.key_id)
        return jwt.encode(signer, body).decode()

    def publish(self, email: str, url: str, *, audience: str, service_account: str) -> int | None:
        """Pub/Sub push as Google sends it for a watched account: POST {message: {data}} with an OIDC token.
        Returns the HTTP status (None when the account has no watch or the endpoint is unreachable)."""
        import urllib.error
        import urllib.request
        account = self.accounts.get(email.lower())
        if account is None or account.watch is None:
            return None
        data = base64.b64encode(json.dumps({"emailAddress": account.email,
                                            "historyId": account.history_id}).encode()).decode()
        envelope = {"message": {"data": data, "messageId": secrets.token_hex(8)},
                    "subscription": "projects/demo/subscriptions/gmail-push"}
        token = self.sign_push_token({"aud": audience, "email": service_account})
        request = urllib.request.Request(url, data=json.dumps(envelope).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback demo
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    # ---- helpers ----------------------------------------------------------------------------------------
    def _bump(self, account: Account) -> int:
        account.history_id += 1 + secrets.randbelow(3)       # ids increase, not necessarily by one
        return account.history_id

    @staticmethod
    def _ref(message: StoredMessage) -> dict:
        return {"id": message.id, "threadId": message.thread_id, "labelIds": sorted(message.labels)}

    def _injected(self, endpoint: str) -> Reply | None:
        with self._lock:
            queue = self._failures.get(endpoint)
            return queue.pop(0) if queue else None

    def _account_for(self, headers: dict[str, str], user_id: str) -> Account | Reply:
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        grant = self.access_tokens.get(token)
        if grant is None or grant["revoked"] or grant["expires"] < time.time():
            return api_error(401, "Request had invalid authentication credentials.", "authError")
        if user_id not in ("me", grant["email"]):
            return api_error(403, "Delegation denied", "forbidden")
        return self.accounts[grant["email"]]

    # ---- OAuth ------------------------------------------------------------------------------------------
    def authorize(self, query: dict[str, str]) -> Reply:
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") not in self.clients or not redirect_uri:
            return Reply(400, b"Error 400: invalid_request", {"Content-Type": "text/plain"})
        params = {"state": query.get("state", "")}
        if self.deny:
            params["error"] = "access_denied"
        else:
            if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256" \
                    or not query.get("code_challenge"):
                params["error"] = "invalid_request"
            else:
                email = (self.consent_as or query.get("login_hint") or "").lower()
                self.add_account(email)
                code = "4/fake-code-" + secrets.token_urlsafe(16)
                granted = " ".join(s for s in query.get("scope", "").split() if s not in self.withhold_scopes)
                self.codes[code] = {"client_id": query["client_id"], "redirect_uri": redirect_uri,
                                    "challenge": query["code_challenge"], "email": email,
                                    "scope": granted,
                                    "offline": query.get("access_type") == "offline",
                                    "consent": "consent" in query.get("prompt", "").split()}
                params.update({"code": code, "scope": granted})
        separator = "&" if "?" in redirect_uri else "?"
        return Reply(302, b"", {"Location": redirect_uri + separator + urlencode(params)})

    def _token_error(self, error: str, description: str, status: int = 400) -> Reply:
        return Reply(status, {"error": error, "error_description": description},
                     {"Content-Type": "application/json"})

    def token(self, form: dict[str, str]) -> Reply:
        client_id = form.get("client_id", "")
        if self.clients.get(client_id) != form.get("client_secret"):
            return self._token_error("invalid_client", "Unauthorized", 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)     # single use
            if grant is None or grant["client_id"] != client_id or grant["redirect_uri"] != form.get("redirect_uri"):
                return self._token_error("invalid_grant", "Malformed auth code.")
            verifier = form.get("code_verifier", "")
            if b64url(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
                return self._token_error("invalid_grant", "Invalid code verifier.")
            answer = self._access_token(grant["email"], grant["scope"])
            if grant["offline"] and grant["consent"]:
                refresh = "1//fake-rt-" + secrets.token_urlsafe(24)
                self.refresh_tokens[refresh] = {"email": grant["email"], "client_id": client_id, "revoked": False,
                                                "scope": grant["scope"]}
                answer["refresh_token"] = refresh
            return Reply(200, answer, {"Content-Type": "application/json"})
        if grant_type == "refresh_token":
            grant = self.refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None or grant["revoked"] or grant["client_id"] != client_id:
                return self._token_error("invalid_grant", "Token has been expired or revoked.")
            answer = self._access_token(grant["email"], grant["scope"])
            if self.rotate_refresh_tokens:
                rotated = "1//fake-rt-" + secrets.token_urlsafe(24)
                self.refresh_tokens[rotated] = dict(grant)
                grant["revoked"] = True
                answer["refresh_token"] = rotated
            return Reply(200, answer, {"Content-Type": "application/json"})
        return self._token_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _access_token(self, email: str, scope: str) -> dict:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.access_tokens[token] = {"email": email, "revoked": False,
                                     "expires": time.time() + self.access_token_seconds}
        return {"access_token": token, "expires_in": self.access_token_seconds, "token_type": "Bearer",
                "scope": scope}

    def certs(self) -> Reply:
        return Reply(200, {self.key_id: self._cert_pem}, {"Content-Type": "application/json",
                                                          "Cache-Control": "public, max-age=3600"})

    # ---- Gmail API --------------------------------------------------------------------------------------
    def gmail(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: bytes) -> tuple[str, Reply]:
        """Route one Gmail API call (also used for each part of a batch)."""
        match = re.fullmatch(r"/gmail/v1/users/([^/]+)/(.+)", path)
        if not match:
            return "unknown", api_error(404, "Not Found")
        user_id, rest = match.group(1), match.group(2)
        routes = [("GET", r"profile", "profile"), ("GET", r"messages", "messages.list"),
                  ("POST", r"messages/send", "messages.send"), ("GET", r"messages/([^/]+)", "messages.get"),
                  ("GET", r"history", "history.list"), ("POST", r"watch", "watch"), ("POST", r"stop", "stop"),
                  ("GET", r"labels", "labels.list")]
        for verb, pattern, name in routes:
            found = re.fullmatch(pattern, rest)
            if verb == method and found:
                break
        else:
            return "unknown", api_error(404, "Not Found")
        with self._lock:
            self.calls[name] += 1
            single = {k: v[-1] for k, v in query.items()}
            self.requests.append((name, {k: (v if len(v) > 1 else v[0]) for k, v in query.items()}))
            qualified = f"{name}:{single.get('format', 'full')}" if name == "messages.get" else None
            if qualified:
                self.gets[single.get("format", "full")] += 1
            injected = (self._injected(qualified) if qualified else None) or self._injected(name)
            if injected is not None:
                return name, injected
            account = self._account_for(headers, user_id)
            if isinstance(account, Reply):
                return name, account
            data = json.loads(body) if body.strip() else {}
            handler = getattr(self, "_" + name.replace(".", "_"))
            reply = handler(account, single, query, data, *found.groups())
            return name, self._injected("after:" + name) or reply

    def _profile(self, account: Account, single, query, data) -> Reply:
        return Reply(200, {"emailAddress": account.email, "messagesTotal": len(account.messages),
                           "threadsTotal": len({m.thread_id for m in account.messages.values()}),
                           "historyId": str(account.history_id)})

    def _messages_list(self, account: Account, single, query, data) -> Reply:
        labels = set(query.get("labelIds", []))
        after = _after_epoch(single.get("q", ""))
        need, exclude = _in_filters(single.get("q", ""))
        wanted_id = _rfc822msgid(single.get("q", ""))
        include_spam_trash = single.get("includeSpamTrash") == "true"
        found = [m for m in account.messages.values()
                 if labels | need <= m.labels and not exclude & m.labels
                 and (wanted_id is None or _message_id_of(m.raw) == wanted_id)
                 and (after is None or m.internal_ms >= after * 1000)
                 and (include_spam_trash or not m.labels & {"SPAM", "TRASH"})]
        found.sort(key=lambda m: (m.internal_ms, m.id), reverse=True)     # newest first
        start = int(single.get("pageToken") or 0)
        size = min(int(single.get("maxResults") or 100), 500)
        page = found[start:start + size]
        answer: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            answer["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + size < len(found):
            answer["nextPageToken"] = str(start + size)
        return Reply(200, answer)

    def _labels_list(self, account: Account, single, query, data) -> Reply:
        system = [{"id": label, "name": label, "type": "system"} for label in SYSTEM_LABELS]
        user = [{"id": label_id, "name": name, "type": "user"} for label_id, name in account.labels.items()]
        return Reply(200, {"labels": system + user})

    def _messages_get(self, account: Account, single, query, data, message_id: str) -> Reply:
        message = account.messages.get(message_id)
        if message is None:
            return api_error(404, "Requested entity was not found.", "notFound")
        answer = {"id": message.id, "threadId": message.thread_id, "labelIds": sorted(message.labels),
                  "historyId": str(message.history_id), "internalDate": str(message.internal_ms),
                  "sizeEstimate": len(message.raw), "snippet": ""}
        fmt = single.get("format", "full")
        if fmt == "raw":
            answer["raw"] = b64url(message.raw)
        elif fmt not in ("minimal", "metadata"):
            return api_error(400, "only format=raw|minimal|metadata in this fake", "invalidArgument")
        return Reply(200, answer)

    def _history_list(self, account: Account, single, query, data) -> Reply:
        try:
            start = int(single.get("startHistoryId", ""))
        except ValueError:
            return api_error(400, "Invalid startHistoryId", "invalidArgument")
        if start < account.oldest_history_id:
            return api_error(404, "Requested entity was not found.", "notFound")
        label = single.get("labelId")
        types = set(query.get("historyTypes", [])) or {"messageAdded", "messageDeleted", "labelAdded",
                                                       "labelRemoved"}
        kinds = {"messageAdded": "messagesAdded", "messageDeleted": "messagesDeleted",
                 "labelAdded": "labelsAdded", "labelRemoved": "labelsRemoved"}
        records = []
        for record in account.history:
            if record["id"] <= start:
                continue
            out: dict[str, Any] = {"id": str(record["id"]), "messages": []}
            for history_type, key in kinds.items():
                entries = [entry for entry in record.get(key, [])
                           if history_type in types and (label is None or label in entry["message"]["labelIds"]
                                                         or label in entry.get("labelIds", []))]
                if entries:
                    out[key] = entries
                    out["messages"] += [{"id": e["message"]["id"], "threadId": e["message"]["threadId"]}
                                        for e in entries]
            if len(out) > 2:
                records.append(out)
        offset = int(single.get("pageToken") or 0)
        size = min(int(single.get("maxResults") or 100), 500)
        page = records[offset:offset + size]
        answer: dict[str, Any] = {"historyId": str(account.history_id)}
        if page:
            answer["history"] = page
        if offset + size < len(records):
            answer["nextPageToken"] = str(offset + size)
        return Reply(200, answer)

    def _watch(self, account: Account, single, query, data) -> Reply:
        topic = data.get("topicName") or ""
        if not re.fullmatch(r"projects/[^/]+/topics/[^/]+", topic):
            return api_error(400, "Invalid topicName", "invalidArgument")
        expiration = int((time.time() + WATCH_SECONDS) * 1000)
        account.watch = {"topicName": topic, "labelIds": data.get("labelIds") or [], "expiration": expiration}
        return Reply(200, {"historyId": str(account.history_id), "expiration": str(expiration)})

    def _stop(self, account: Account, single, query, data) -> Reply:
        account.watch = None
        return Reply(204, None)

    def _messages_send(self, account: Account, single, query, data) -> Reply:
        try:
            raw = base64.urlsafe_b64decode(data["raw"] + "=" * (-len(data["raw"]) % 4))
        except (KeyError, ValueError, TypeError):
            return api_error(400, "Invalid raw", "invalidArgument")
        thread_id = data.get("threadId")
        if thread_id and not any(m.thread_id == thread_id for m in account.messages.values()):
            return api_error(404, "Requested entity was not found.", "notFound")
        self.sent.append({"raw": raw, "threadId": thread_id, "email": account.email})
        message_id = self.deliver(account.email, raw, labels=("SENT",), thread_id=thread_id)
        message = account.messages[message_id]
        return Reply(200, {"id": message.id, "threadId": message.thread_id, "labelIds": sorted(message.labels)})

    def batch(self, headers: dict[str, str], body: bytes) -> Reply:
        """Gmail batch: each `application/http` part is an HTTP request answered by its own part."""
        with self._lock:
            self.calls["batch"] += 1
            injected = self._injected("batch")
        if injected is not None:
            return injected
        content_type = headers.get("content-type", "")
        message = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        if not message.is_multipart():
            return api_error(400, "Batch request is not multipart/mixed", "badRequest")
        parts = message.get_payload()
        if len(parts) > 100:
            return api_error(400, "Too many requests in batch", "badRequest")
        boundary = "batch_" + secrets.token_hex(8)
        out = []
        for part in parts:
            inner = part.get_payload(decode=True) or b""
            head, _, inner_body = inner.partition(b"\r\n\r\n") if b"\r\n\r\n" in inner else inner.partition(b"\n\n")
            lines = head.decode("latin-1").splitlines()
            method, target, _ = lines[0].split(" ", 2)
            inner_headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                inner_headers[name.strip().lower()] = value.strip()
            split = urlsplit(target)
            _, reply = self.gmail(method, split.path, parse_qs(split.query), inner_headers, inner_body)
            status_line = f"HTTP/1.1 {reply.status} {'OK' if reply.status < 300 else 'Error'}"
            payload = reply.payload().decode()
            content_id = (part.get("Content-ID") or "").strip("<>")
            extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items() if k.lower() != "content-type")
            out.append(f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{content_id}>\r\n\r\n"
                       f"{status_line}\r\nContent-Type: application/json; charset=UTF-8\r\n{extra}"
                       f"Content-Length: {len(payload.encode())}\r\n\r\n{payload}\r\n")
        text = "".join(out) + f"--{boundary}--\r\n"
        return Reply(200, text.encode(), {"Content-Type": f"multipart/mixed; boundary={boundary}"})


IN_LABELS = {"inbox": "INBOX", "sent": "SENT", "spam": "SPAM", "trash": "TRASH", "draft": "DRAFT",
             "drafts": "DRAFT", "chats": "CHAT"}


def _in_filters(q: str) -> tuple[set[str], set[str]]:
    """Gmail search `in:<folder>` / `-in:<folder>` (support.google.com/mail/answer/7190: `in:`, and `-` to
    remove messages from the results) as (labels required, labels excluded)."""
    need, exclude = set(), set()
    for minus, name in re.findall(r"(?:^|\s)(-?)in:(\w+)", q):
        label = IN_LABELS.get(name.lower())
        if label:
            (exclude if minus else need).add(label)
    return need, exclude


def _rfc822msgid(q: str) -> str | None:
    """Gmail search `rfc822msgid:` (support.google.com/mail/answer/7190): the Message-ID header, without <>."""
    match = re.search(r"\brfc822msgid:(\S+)", q)
    return match.group(1).strip("<>") if match else None


def _message_id_of(raw: bytes) -> str:
    head = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    return str(head.get("Message-ID") or "").strip().strip("<>")


def _after_epoch(q: str) -> int | None:
    """Gmail search `after:` with epoch seconds or YYYY/MM/DD (support.google.com/mail/answer/7190)."""
    match = re.search(r"\bafter:(\S+)", q)
    if not match:
        return None
    value = match.group(1)
    if value.isdigit():
        return int(value)
    day = datetime.strptime(value.replace("-", "/"), "%Y/%m/%d").replace(tzinfo=timezone.utc)
    return int(day.timestamp())


_KEYS: list = []


def _make_signing_key():
    """One RSA key and self-signed certificate per process (generated at run time, never stored)."""
    if not _KEYS:
        _KEYS.append(_generate_signing_key())
    return _KEYS[0]


def _generate_signing_key():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-google-push")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return key, pem, secrets.token_hex(20)


def _handler_for(fake: FakeGoogle):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return None

        def _send(self, reply: Reply) -> None:
            payload = reply.payload()
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json; charset=UTF-8", **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _dispatch(self, method: str) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            query = parse_qs(split.query)
            single = {k: v[-1] for k, v in query.items()}
            path = split.path
            if method == "GET" and path == "/o/oauth2/v2/auth":
                with fake._lock:
                    fake.calls["authorize"] += 1
                    reply = fake.authorize(single)
            elif method == "POST" and path == "/token":
                form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
                with fake._lock:
                    fake.calls["token"] += 1
                    reply = fake._injected("token") or fake.token(form)
            elif method == "GET" and path == "/oauth2/v1/certs":
                with fake._lock:
                    fake.calls["certs"] += 1
                reply = fake.certs()
            elif method == "POST" and path in ("/batch/gmail/v1", "/batch"):
                reply = fake.batch(headers, body)
            elif path.startswith(GMAIL_PREFIX):
                _, reply = fake.gmail(method, path, query, headers, body)
            else:
                reply = api_error(404, "Not Found")
            self._send(reply)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

    return Handler


if __name__ == "__main__":          # `make demo-gmail`: the demo lives beside, it only drives this fake
    from devservers.gmail_demo import main
    raise SystemExit(main())
