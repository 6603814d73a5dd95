"""A fake Microsoft identity platform + Graph (mail) on loopback over TLS, for tests and `make demo-outlook`.

One threaded HTTPS server serves both halves: the identity platform at `<base>/<tenant>/...`
(`devservers.fake_identity`) and Graph at `<base>/v1.0/...`. Point mailbridge at it with
`MAILBRIDGE_MICROSOFT_AUTHORITY_HOST=<base>`, `MAILBRIDGE_GRAPH_API_ROOT=<base>/v1.0` and
`REQUESTS_CA_BUNDLE=<ca_path>` (the CA is made at start, `devservers.tlsca`).

Graph wire format followed (learn.microsoft.com Graph v1.0 reference): `GET /me`; `GET /me/mailFolders` (top
level: `inbox`, `sentitems` and folders made with `mail.add_folder`); `GET /me/mailFolders/{id or well-known
name}/messages/delta` (`devservers.fake_graph_state`); `GET /me/messages/{id}/$value` (MIME);
`POST /$batch` (at most 20 requests, non-JSON bodies base64-encoded); `POST /subscriptions` (validation
handshake: POST `notificationUrl?validationToken=…` and `lifecycleNotificationUrl?validationToken=…`, the app
must answer 200 `text/plain` with the decoded token within 10 s; expiry at most 4,230 minutes ahead),
`PATCH`/`DELETE /subscriptions/{id}`, `POST /subscriptions/{id}/reauthorize`; `POST /me/sendMail` and
`/me/messages/{id}/reply|replyAll|forward` (MIME: base64 `text/plain` body; 202, no body; the copy lands in
Sent Items); `GET /me/mailFolders/{folder}/messages?$filter=internetMessageId eq '<id>'`. Errors are
`{"error": {"code", "message"}}`; 429/503 carry `Retry-After` (seconds).

Test controls: `throttle()`, `inject()`, `notify()`, `lifecycle()`, `sign_in()`; observations:
`graph_requests`, `max_concurrency[user]`, `missing_immutable_id`, `subscriptions`, user `sent` lists.
"""
from __future__ import annotations

import base64
import html
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import requests

from devservers.fake_graph_state import FOLDERS, MailState, iso
from devservers.fake_identity import IdentityState, admin_consent, authorize, metadata, token
from devservers.tlsca import LoopbackTls, make_loopback_tls

MAX_SUBSCRIPTION_MINUTES = 4230
VALIDATION_TIMEOUT = 10.0
BATCH_LIMIT = 20
Reply = tuple[int, dict, bytes]
Deliver = Callable[[str, bytes, dict], tuple[int, dict, bytes]]


def _json(status: int, body: dict | None, headers: dict | None = None) -> Reply:
    if body is None:
        return status, dict(headers or {}), b""
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def graph_error(status: int, code: str, message: str, headers: dict | None = None) -> Reply:
    return _json(status, {"error": {"code": code, "message": message,
                                    "innerError": {"request-id": secrets.token_hex(8)}}}, headers)


def http_deliver(url: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    """POST to the app over the network (the local stack); tests inject a deliverer calling the app in-process."""
    response = requests.post(url, data=body, headers=headers, timeout=VALIDATION_TIMEOUT)
    return response.status_code, dict(response.headers), response.content


def browser_sign_in(authorize_url: str, ca_path: str) -> tuple[str, str, dict[str, str]]:
    """Follow an authorize (or admin-consent) URL as the browser would: (method, redirect_uri, params) of the
    answer — a 302 (query) or the auto-submitting form of `response_mode=form_post`."""
    response = requests.get(authorize_url, allow_redirects=False, timeout=10, verify=ca_path)
    if response.status_code == 302:
        parts = urlsplit(response.headers["Location"])
        return "GET", f"{parts.scheme}://{parts.netloc}{parts.path}", dict(parse_qsl(parts.query))
    if response.status_code == 200 and "<form" in response.text:
        action = re.search(r'action="([^"]+)"', response.text).group(1)
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', response.text))
        return "POST", html.unescape(action), {k: html.unescape(v) for k, v in fields.items()}
    raise AssertionError(f"authorize answered {response.status_code}: {response.text[:200]}")


@dataclass
class Injected:
    status: int
    body: dict | None
    headers: dict
    path: str
    method: str | None
    remaining: int
    after: bool = False      # answered once the request took effect (a 500 hiding a success)


@dataclass
class Subscription:
    id: str
    user: str
    folder: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: str
    resource: str

    def resource_json(self) -> dict:
        return {"@odata.type": "#microsoft.graph.subscription", "id": self.id, "resource": self.resource,
                "changeType": self.change_type, "notificationUrl": self.notification_url,
                "lifecycleNotificationUrl": self.lifecycle_url, "expirationDateTime": self.expires,
                "applicationId": "fake-app", "creatorId": self.user, "latestSupportedTlsVersion": "v1_2"}


_RESOURCE = re.compile(r"^/?(?:me|users/[^/]+)/mailFolders(?:\('([^']+)'\)|/([^/]+))/messages$", re.IGNORECASE)


@dataclass
class FakeMicrosoft:
    deliver: Deliver = http_deliver
    latency: float = 0.0
    tls: LoopbackTls | None = None
    port: int = 0
    mail: MailState = field(default_factory=MailState)
    graph_requests: list[tuple[str, str, str]] = field(default_factory=list)
    max_concurrency: dict[str, int] = field(default_factory=dict)
    missing_immutable_id: int = 0
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    validation_token: str | None = None          # next handshake token (default: Graph's wording + a request id)
    validations: list[tuple[str, float]] = field(default_factory=list)   # (url, seconds the app took)

    def __post_init__(self) -> None:
        self.identity = IdentityState(self.mail)
        self._injected: list[Injected] = []
        self._inflight: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> "FakeMicrosoft":
        self.tls = self.tls or make_loopback_tls()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        server.socket = self.tls.server_context().wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, name="fake-microsoft", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeMicrosoft":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def graph_root(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def ca_path(self) -> str:
        assert self.tls is not None
        return str(self.tls.ca_path)

    # ---- test controls ---------------------------------------------------------------------------------
    def add_user(self, address: str, *, tenant_id: str = "11111111-2222-3333-4444-555555555555",
                 upn: str | None = None):
        return self.mail.add_user(address, tenant_id, upn)

    def inject(self, status: int, body: dict | None = None, *, path: str = "", method: str | None = None,
               times: int = 1, headers: dict | None = None, after: bool = False) -> None:
        """The next `times` Graph requests whose path contains `path` answer `status` with `body` — `after`:
        once the request took effect (e.g. sendMail sent the message)."""
        with self._lock:
            self._injected.append(Injected(status, body, dict(headers or {}), path, method, times, after))

    def clear_injected(self) -> None:
        with self._lock:
            self._injected.clear()

    def throttle(self, *, status: int = 429, retry_after: int = 1, path: str = "", times: int = 1) -> None:
        code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
        self.inject(status, {"error": {"code": code, "message": "Application is over its request quota."}},
                    path=path, times=times, headers={"Retry-After": str(retry_after)})

    def requests_for(self, address: str, contains: str = "") -> list[tuple[str, str]]:
        return [(m, p) for m, p, u in self.graph_requests if u == address.lower() and contains in p]

    def sign_in(self, authorize_url: str) -> tuple[str, str, dict[str, str]]:
        return browser_sign_in(authorize_url, self.ca_path)

    def notify(self, address: str, folder: str, message_id: str, *, client_state: str | None = None
               ) -> list[tuple[int, dict, bytes]]:
        """POST a `created` change notification for each subscription of the user's folder."""
        out = []
        for sub in [s for s in self.subscriptions.values() if s.user == address.lower() and s.folder == folder]:
            user = self.mail.user(address)
            item = {"subscriptionId": sub.id, "subscriptionExpirationDateTime": sub.expires,
                    "changeType": "created", "resource": f"Users/{user.object_id}/Messages/{message_id}",
                    "resourceData": {"@odata.type": "#Microsoft.Graph.Message",
                                     "@odata.id": f"Users/{user.object_id}/Messages/{message_id}",
                                     "id": message_id},
                    "clientState": sub.client_state if client_state is None else client_state,
                    "tenantId": user.tenant_id}
            out.append(self.deliver(sub.notification_url, json.dumps({"value": [item]}).encode(),
                                    {"Content-Type": "application/json"}))
        return out

    def lifecycle(self, subscription_id: str, event: str) -> tuple[int, dict, bytes]:
        """POST a lifecycle notification (`reauthorizationRequired`, `subscriptionRemoved`, `missed`)."""
        sub = self.subscriptions[subscription_id]
        if event == "subscriptionRemoved":
            self.subscriptions.pop(subscription_id, None)
        item = {"subscriptionId": sub.id, "subscriptionExpirationDateTime": sub.expires,
                "tenantId": self.mail.user(sub.user).tenant_id, "clientState": sub.client_state,
                "lifecycleEvent": event}
        return self.deliver(sub.lifecycle_url or sub.notification_url, json.dumps({"value": [item]}).encode(),
                            {"Content-Type": "application/json"})

    # ---- request handling ----------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        path, query = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
        if path.startswith("/v1.0/"):
            return self._graph_http(method, path[len("/v1.0"):], query, headers, body)
        match = re.fullmatch(r"/([^/]+)/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/authorize|"
                             r"oauth2/v2\.0/token|v2\.0/adminconsent)", path)
        if not match:
            return graph_error(404, "NotFound", f"no route {path}")
        tenant, what = match.groups()
        if what.endswith("openid-configuration"):
            if not self.identity.knows_tenant(tenant):
                return _json(400, {"error": "invalid_tenant", "error_codes": [90002],
                                   "error_description": f"AADSTS90002: Tenant '{tenant}' not found."})
            return _json(200, metadata(self.base_url, tenant))
        if what.endswith("authorize") and method == "GET":
            return authorize(self.identity, self.base_url, tenant, query)
        if what.endswith("adminconsent") and method == "GET":
            return admin_consent(self.identity, tenant, query)
        if what.endswith("token") and method == "POST":
            return token(self.identity, self.base_url, dict(parse_qsl(body.decode())))
        return graph_error(405, "MethodNotAllowed", method)

    def _graph_http(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Reply:
        auth = headers.get("authorization", "")
        user = self.identity.user_for_access_token(auth[7:]) if auth.startswith("Bearer ") else None
        self.graph_requests.append((method, path, user or ""))
        if 'idtype="immutableid"' not in headers.get("prefer", "").lower().replace(" ", ""):
            self.missing_immutable_id += 1
        injected = self._take_injected(method, path, after=False)
        if injected is not None:
            return _json(injected.status, injected.body, injected.headers)
        if user is None:
            return graph_error(401, "InvalidAuthenticationToken", "Access token is empty or expired.")
        reply = self._graph_as_user(method, path, query, headers, body, user)
        injected = self._take_injected(method, path, after=True)
        return reply if injected is None else _json(injected.status, injected.body, injected.headers)

    def _graph_as_user(self, method: str, path: str, query: dict, headers: dict, body: bytes, user: str) -> Reply:
        with self._lock:
            self._inflight[user] = self._inflight.get(user, 0) + 1
            self.max_concurrency[user] = max(self.max_concurrency.get(user, 0), self._inflight[user])
        try:
            if self.latency:
                time.sleep(self.latency)
            if path == "/$batch" and method == "POST":
                return self._batch(user, body)
            return self._graph(method, path, query, headers, body, user)
        finally:
            with self._lock:
                self._inflight[user] -= 1

    def _take_injected(self, method: str, path: str, *, after: bool) -> Injected | None:
        with self._lock:
            for item in self._injected:
                if (item.path in path and (item.method in (None, method)) and item.remaining > 0
                        and item.after == after):
                    item.remaining -= 1
                    if item.remaining == 0:
                        self._injected.remove(item)
                    return item
        return None

    def _batch(self, user: str, body: bytes) -> Reply:
        requests_ = json.loads(body or b"{}").get("requests") or []
        if len(requests_) > BATCH_LIMIT:
            return graph_error(400, "BadRequest", f"Number of batch requests exceeds {BATCH_LIMIT}.")
        responses = []
        for item in requests_:
            parts = urlsplit(item["url"] if item["url"].startswith("/") else "/" + item["url"])
            status, headers, payload = self._graph(item.get("method", "GET"), parts.path,
                                                   dict(parse_qsl(parts.query)), {}, b"", user)
            entry = {"id": item["id"], "status": status, "headers": headers}
            if payload:
                entry["body"] = (json.loads(payload) if "json" in headers.get("Content-Type", "")
                                 else base64.b64encode(payload).decode())
            responses.append(entry)
        return _json(200, {"responses": responses})

    def _graph(self, method: str, path: str, query: dict, headers: dict, body: bytes, user: str) -> Reply:
        if path == "/me" and method == "GET":
            return _json(200, self.mail.user(user).profile())
        if path == "/me/mailFolders" and method == "GET":
            return _json(200, {"value": [{"id": folder_id, "displayName": name}
                                         for folder_id, name in self.mail.user(user).folders.items()]})
        match = re.fullmatch(r"/me/mailFolders/([^/]+)/messages/delta", path)
        if match and method == "GET":
            folder = unquote(match.group(1))
            return self._delta(user, folder if folder in self.mail.user(user).folders else folder.lower(), query,
                               headers)
        match = re.fullmatch(r"/me/messages/([^/]+)/\$value", path)
        if match and method == "GET":
            message = self.mail.user(user).messages.get(match.group(1))
            if message is None:
                return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            return 200, {"Content-Type": "text/plain"}, message.raw
        if path == "/me/sendMail" and method == "POST":
            return self._send(user, "sendMail", None, headers, body)
        match = re.fullmatch(r"/me/mailFolders/([^/]+)/messages", path)
        if match and method == "GET":
            return self._list_by_message_id(user, unquote(match.group(1)).lower(), query)
        match = re.fullmatch(r"/me/messages/([^/]+)/(reply|replyAll|forward)", path)
        if match and method == "POST":
            if match.group(1) not in self.mail.user(user).messages:
                return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            return self._send(user, match.group(2), match.group(1), headers, body)
        if path == "/subscriptions" and method == "POST":
            return self._subscribe(user, json.loads(body or b"{}"))
        match = re.fullmatch(r"/subscriptions/([^/]+)(/reauthorize)?", path)
        if match:
            return self._subscription(method, match.group(1), bool(match.group(2)), json.loads(body or b"{}")
                                      if method == "PATCH" else {}, user)
        return graph_error(400, "BadRequest", f"Unsupported request {method} {path}")

    def _delta(self, user: str, folder: str, query: dict, headers: dict) -> Reply:
        if folder not in self.mail.user(user).folders:
            return graph_error(404, "ErrorInvalidIdMalformed", "Id is malformed.")
        prefer = re.search(r"odata\.maxpagesize=(\d+)", headers.get("prefer", ""))
        page_size = int(prefer.group(1)) if prefer else int(query.get("$top") or 10)
        since = re.search(r"receivedDateTime\s+ge\s+(\S+)", query.get("$filter", ""))
        status, body = self.mail.delta(user, folder, skiptoken=query.get("$skiptoken"),
                                       deltatoken=query.get("$deltatoken"), since=since.group(1) if since else None,
                                       page_size=page_size, link_base=f"{self.graph_root}/me/mailFolders/"
                                                                      f"{folder}/messages/delta")
        return _json(status, body, {"Preference-Applied": f"odata.maxpagesize={page_size}"} if prefer else None)

    def _list_by_message_id(self, user: str, folder: str, query: dict) -> Reply:
        """`GET /me/mailFolders/{folder}/messages?$filter=internetMessageId eq '<id>'` (the one filter used)."""
        wanted = re.fullmatch(r"\s*internetMessageId\s+eq\s+'(.*)'\s*", query.get("$filter", ""))
        if wanted is None:
            return graph_error(400, "BadRequest", "Only $filter=internetMessageId eq '...' in this fake.")
        value = wanted.group(1).replace("''", "'")
        found = [m.resource() for m in self.mail.user(user).messages.values()
                 if m.folder == folder and m.resource()["internetMessageId"] == value]
        return _json(200, {"value": [{"id": r["id"], "internetMessageId": r["internetMessageId"]} for r in found]})

    def _send(self, user: str, action: str, message_id: str | None, headers: dict, body: bytes) -> Reply:
        if headers.get("content-type", "").startswith("text/plain"):
            try:
                raw = base64.b64decode(body, validate=True)
            except ValueError:
                return graph_error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME")
            record = {"action": action, "message_id": message_id, "raw": raw}
        else:
            record = {"action": action, "message_id": message_id, "json": json.loads(body or b"{}")}
        self.mail.user(user).sent.append(record)
        if "raw" in record:
            self.mail.add_message(user, "sentitems", record["raw"])
        return 202, {}, b""

    def _subscribe(self, user: str, body: dict) -> Reply:
        match = _RESOURCE.match(body.get("resource") or "")
        folder = (match.group(1) or match.group(2)).lower() if match else ""
        if folder not in FOLDERS:
            return graph_error(400, "InvalidRequest", "Unsupported resource.")
        try:
            expires = datetime.fromisoformat(str(body.get("expirationDateTime")).replace("Z", "+00:00"))
        except ValueError:
            return graph_error(400, "InvalidRequest", "expirationDateTime is invalid.")
        if expires > datetime.now(timezone.utc) + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
            return graph_error(400, "InvalidRequest", "Subscription expiration can only be 4230 minutes in the "
                                                      "future.")
        if len(body.get("clientState") or "") > 128:
            return graph_error(400, "InvalidRequest", "clientState is longer than 128 characters.")
        for url in filter(None, (body.get("notificationUrl"), body.get("lifecycleNotificationUrl"))):
            if not self._validate_endpoint(url):
                return graph_error(400, "ValidationError", "Subscription validation request failed. Response "
                                                           "must exactly match validationToken query parameter.")
        sub = Subscription(secrets.token_hex(16), user, folder, body.get("changeType", "created"),
                           body["notificationUrl"], body.get("lifecycleNotificationUrl"), body.get("clientState"),
                           iso(expires), body["resource"])
        self.subscriptions[sub.id] = sub
        return _json(201, sub.resource_json())

    def _validate_endpoint(self, url: str) -> bool:
        token_ = self.validation_token or (f"Validation: Testing client application reachability for "
                                           f"subscription Request-Id: {secrets.token_hex(16)}")
        separator = "&" if "?" in url else "?"
        started = time.monotonic()
        try:
            status, headers, answer = self.deliver(f"{url}{separator}validationToken={quote(token_)}", b"",
                                                   {"Content-Type": "text/plain; charset=utf-8"})
        except requests.RequestException:
            return False
        took = time.monotonic() - started
        self.validations.append((url, took))
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        return (status == 200 and ctype.startswith("text/plain") and answer.decode("utf-8", "replace") == token_
                and took <= VALIDATION_TIMEOUT)

    def _subscription(self, method: str, sub_id: str, reauthorize: bool, body: dict, user: str) -> Reply:
        sub = self.subscriptions.get(sub_id)
        if sub is None or sub.user != user:
            return graph_error(404, "ResourceNotFound", "The object was not found.")
        if reauthorize and method == "POST":
            return 204, {}, b""
        if method == "DELETE":
            del self.subscriptions[sub_id]
            return 204, {}, b""
        if method == "PATCH":
            expires = datetime.fromisoformat(str(body.get("expirationDateTime")).replace("Z", "+00:00"))
            if expires > datetime.now(timezone.utc) + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
                return graph_error(400, "InvalidRequest", "Subscription expiration can only be 4230 minutes in "
                                                          "the future.")
            sub.expires = iso(expires)
            return _json(200, sub.resource_json())
        return graph_error(405, "MethodNotAllowed", method)


def _handler_for(fake: FakeMicrosoft) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, out_headers, payload = fake.handle(self.command, self.path, headers, body)
            except Exception as exc:  # noqa: BLE001 - a fake answers 500 like the real service would
                status, out_headers, payload = graph_error(500, "InternalServerError", repr(exc))
            self.send_response(status)
            for name, value in out_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, *args) -> None:
            pass

    return Handler


if __name__ == "__main__":          # `make demo-outlook`: the demo lives beside, it only drives this fake
    from devservers.outlook_demo import main
    raise SystemExit(main())
