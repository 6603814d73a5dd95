"""Mail servers (tenant admin only): IMAP/SMTP presets and OAuth applications; secrets are write-only and
the response shows the `redirect_uri` to register at Google / Microsoft."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api.blueprints.mailboxes import domain_errors
from chalicelib.api.guards import not_found, require_tenant_admin
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module
from chalicelib.models.mailbox import MailServer

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.common import ListQuery
    from chalicelib.api.schemas.mail_servers import CreateMailServer, UpdateMailServer

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
servers = lazy_module("chalicelib.mailboxes.servers")
serialize = lazy_module("chalicelib.mailboxes.serialize")

bp = Blueprint(__name__)
TAGS = ("mail-servers",)


def _owned_server(server_id: str) -> MailServer:
    principal = require_tenant_admin()
    server = servers.get_server(principal.tenant_id, server_id)
    if server is None:
        raise not_found("mail server", server_id)
    return server


@route(bp, "/v1/mail-servers", methods=["POST"], body="chalicelib.api.schemas.mail_servers:CreateMailServer",
       response="chalicelib.api.schemas.mail_servers:MailServerOut", status=201,
       location="/v1/mail-servers/{id}",
       summary="Create an IMAP/SMTP preset or an OAuth application (gmail/outlook)", tags=TAGS)
def create_server(body: CreateMailServer):
    principal = require_tenant_admin()
    with domain_errors():
        return serialize.server_out(servers.create_server(principal.tenant_id, body.model_dump()))


@route(bp, "/v1/mail-servers", methods=["GET"], query="chalicelib.api.schemas.common:ListQuery",
       response="chalicelib.api.schemas.mail_servers:MailServerList", summary="List mail servers", tags=TAGS)
def list_servers(query: ListQuery):
    principal = require_tenant_admin()
    items, last = servers.list_servers(principal.tenant_id, query.limit,
                                       decode_cursor(query.cursor, principal.tenant_id, "mail-servers"))
    return {"items": [serialize.server_out(s) for s in items],
            "next_cursor": encode_cursor(principal.tenant_id, "mail-servers", last)}


@route(bp, "/v1/mail-servers/{server_id}", methods=["GET"],
       response="chalicelib.api.schemas.mail_servers:MailServerOut", summary="A mail server", tags=TAGS)
def get_server(server_id: str):
    return serialize.server_out(_owned_server(server_id))


@route(bp, "/v1/mail-servers/{server_id}", methods=["PATCH"],
       body="chalicelib.api.schemas.mail_servers:UpdateMailServer",
       response="chalicelib.api.schemas.mail_servers:MailServerOut",
       summary="Change a mail server (send client_secret to replace it)", tags=TAGS)
def update_server(server_id: str, body: UpdateMailServer):
    server = _owned_server(server_id)
    with domain_errors():
        return serialize.server_out(servers.update_server(server, body.model_dump(exclude_unset=True)))


@route(bp, "/v1/mail-servers/{server_id}", methods=["DELETE"], status=204,
       summary="Delete a mail server (mailboxes keep the settings they copied from it)", tags=TAGS)
def delete_server(server_id: str):
    servers.delete_server(_owned_server(server_id))
    return None
