"""Creating an item under a per-tenant count limit, exactly — also when creates race.

A count followed by a put lets two creates that both counted N-1 of N both put (the window is a login check
for a mailbox, a few milliseconds for a rule; two API processes fit in either). `create_counted` closes it
with a version counter on the tenant item, one per limited kind (`Tenant.mailbox_version`,
`Tenant.rule_version`; a version, not a count):

    read the version (strongly consistent) → count (strongly consistent, the caller's `check`) → ONE
    TransactWriteItems: put the item + bump the version, conditioned on the version still being the one read

DynamoDB TransactWriteItems is all-or-nothing
(https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html), so of two creates
that read the same version one commits and the other is cancelled, reads again and now counts the winner's item.
Deletes need no bump: they only free room. Every cancelled round means another create committed, so `ATTEMPTS`
rounds are only exhausted by a burst of creates of the same kind (`Contended`, 409: nothing stored, try again).
A transaction conflict (another transaction under way on the tenant item — a create of the other kind, or of
this kind not yet committed) is no lost round and no failed condition: the same round's transaction is sent
again (`models.conflicts.retry_conflicts`), and its answer then decides the round; the last conflict is raised.
"""
from __future__ import annotations

from typing import Callable

from pynamodb.attributes import NumberAttribute
from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.models.base import transaction_connection
from chalicelib.models.conflicts import condition_failed, retry_conflicts
from chalicelib.models.tenant import Tenant

ATTEMPTS = 10


class Contended(Exception):
    """Other creates of the same kind kept winning the race for the tenant's version; nothing was stored
    (→ 409 `conflict`). `str()` is safe to show to the caller."""


def _version(tenant_id: str, version: NumberAttribute) -> int | None:
    """The tenant's current `version` (None before the first create); raises DoesNotExist for a gone tenant."""
    return getattr(Tenant.get(tenant_id, consistent_read=True, attributes_to_get=["tenant_id", version.attr_name]),
                   version.attr_name)


def create_counted(tenant_id: str, item: Model, item_condition: Condition, *, version: NumberAttribute,
                   check: Callable[[], None], what: str) -> None:
    """Put `item` (on `item_condition`) only while `check()` — which counts the tenant's items of this kind
    with a strongly consistent read and raises the caller's own "limit reached" error — passes, in one
    transaction with a bump of the tenant's `version` conditioned on the value read before `check()`.
    Raises DoesNotExist when the tenant is gone, `Contended` after `ATTEMPTS` lost rounds (`what` names the
    kind in its message, e.g. "mailboxes")."""
    for _ in range(ATTEMPTS):
        current = _version(tenant_id, version)
        check()
        unchanged = (version == current) if current is not None else version.does_not_exist()
        def commit() -> None:
            with TransactWrite(connection=transaction_connection()) as tx:
                tx.save(item, condition=item_condition)
                tx.update(Tenant(tenant_id), actions=[version.add(1)],
                          condition=Tenant.tenant_id.exists() & unchanged)

        try:
            retry_conflicts(commit)
            return
        except TransactWriteError as exc:
            if not condition_failed(exc):
                raise
    raise Contended(f"Other {what} of this tenant were being created at the same moment; nothing was stored, "
                    "try again.")
