"""Guards the benchmark's cheaper moto transaction rollback against leaving part of a cancelled transaction."""
import pytest
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.models.base import transaction_connection
from chalicelib.models.event import Event
from devservers import moto_transactions


@pytest.fixture
def patched():
    moto_transactions.install()
    yield
    moto_transactions.uninstall()


def test_a_cancelled_transaction_leaves_nothing_behind(aws, patched):
    Event("t", "kept", type="x", payload={"n": 1}, created_at="2026-01-01").save()
    Event("t", "taken", type="x", payload={}, created_at="2026-01-01").save()
    with pytest.raises(TransactWriteError):
        with TransactWrite(connection=transaction_connection()) as tx:
            tx.save(Event("t", "new", type="x", payload={}, created_at="2026-01-01"))
            tx.update(Event("t", "kept"), actions=[Event.payload.set({"n": 2})])
            tx.save(Event("t", "taken", type="y", payload={}, created_at="2026-01-01"),
                    condition=Event.event_id.does_not_exist())
    assert {e.event_id: e.payload for e in Event.query("t")} == {"kept": {"n": 1}, "taken": {}}
    with TransactWrite(connection=transaction_connection()) as tx:
        tx.save(Event("t", "new", type="x", payload={}, created_at="2026-01-01"))
        tx.update(Event("t", "kept"), actions=[Event.payload.set({"n": 2})])
    assert {e.event_id: e.payload for e in Event.query("t")} == {"kept": {"n": 2}, "taken": {}, "new": {}}
