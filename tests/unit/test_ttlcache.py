"""The one in-process cache shape (chalicelib/ttlcache.py): bounded age, bounded size, off at ttl 0."""
from chalicelib import ttlcache
from chalicelib.ttlcache import TtlCache


def test_entries_expire_after_their_ttl(monkeypatch):
    now = {"t": 100.0}
    monkeypatch.setattr(ttlcache.time, "monotonic", lambda: now["t"])
    cache = TtlCache(lambda: 30)
    cache.put("k", "v")
    now["t"] += 29
    assert cache.get("k") == "v"
    now["t"] += 2
    assert cache.get("k") is None and len(cache) == 0


def test_the_least_recently_used_entry_goes_first_when_full():
    cache = TtlCache(lambda: 60, max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1              # "a" used: "b" is now the oldest
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_a_ttl_of_zero_keeps_nothing():
    cache = TtlCache(lambda: 0)
    cache.put("k", "v")
    assert cache.get("k") is None and len(cache) == 0
