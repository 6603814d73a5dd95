"""Operator CLI: `python -m chalicelib.admin <command>` against the configured tables.

    create-tenant --name NAME [--plan standard] [--domain example.com]   prints tenant id and first API key
    set-plan TENANT_ID PLAN
    issue-key TENANT_ID [--name NAME]                                     prints a new API key (shown once)
    operator-key                                                          prints a new operator key and the
                                                                          SHA-256 to configure as
                                                                          MAILBRIDGE_OPERATOR_KEY_SHA256
"""
from __future__ import annotations

import argparse
import json
import sys

from chalicelib.security.apikeys import issue_operator_key
from chalicelib.tenancy import service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.admin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-tenant")
    create.add_argument("--name", required=True)
    create.add_argument("--plan", default="standard")
    create.add_argument("--domain", action="append", default=[])
    plan = sub.add_parser("set-plan")
    plan.add_argument("tenant_id")
    plan.add_argument("plan")
    key = sub.add_parser("issue-key")
    key.add_argument("tenant_id")
    key.add_argument("--name", default="cli")
    sub.add_parser("operator-key")
    args = parser.parse_args(argv)

    if args.command == "operator-key":
        plaintext, digest = issue_operator_key()
        print(json.dumps({"operator_key": plaintext, "MAILBRIDGE_OPERATOR_KEY_SHA256": digest}))
        return 0

    if args.command == "create-tenant":
        tenant = service.create_tenant(args.name, args.plan, own_domains=args.domain)
        created = service.create_key(tenant.tenant_id, "initial")
        print(json.dumps({"tenant_id": tenant.tenant_id, "plan": tenant.plan, "api_key": created.plaintext}))
    elif args.command == "set-plan":
        tenant = service.get_tenant(args.tenant_id)
        if tenant is None:
            print(f"no tenant {args.tenant_id}", file=sys.stderr)
            return 1
        service.update_tenant(tenant, plan=args.plan)
        print(json.dumps({"tenant_id": tenant.tenant_id, "plan": args.plan}))
    elif args.command == "issue-key":
        if service.get_tenant(args.tenant_id) is None:
            print(f"no tenant {args.tenant_id}", file=sys.stderr)
            return 1
        created = service.create_key(args.tenant_id, args.name)
        print(json.dumps({"tenant_id": args.tenant_id, "key_id": created.record.key_id,
                          "api_key": created.plaintext}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
