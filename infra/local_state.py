"""Persistence for the local stack: moto keeps everything in memory, so its data is snapshotted to disk.

Layout of the data dir (default `.local/state/`):

    snapshot/manifest.json        tables -> item counts of the base, buckets -> objects, KMS key material
    snapshot/dynamodb/<table>.jsonl   the base: one item per line, DynamoDB JSON (binary values base64)
    snapshot/journal.jsonl        items written since the base, appended by each snapshot:
                                  {"table", "key", "item"} per line ("item" null = deleted); last line wins
    blobs/<sha256>                S3 object bodies, content-addressed by (bucket, key, ETag) so an
                                  unchanged object is written once, not at every snapshot
    local-secrets.json            operator key, signing key, demo tenant and key (local stage only)

Snapshots are incremental. `infra/local_moto.py` records every DynamoDB item written (put, update, delete,
batch, transaction — in moto's backend, this process), and a snapshot appends just those items, read under
moto's write lock (a consistent cut across tables, held for milliseconds), to the journal, and reads only the
S3 objects it has not stored yet. The first snapshot of a process that restored nothing, and any snapshot
after the journal outgrew twice the base, write a full base instead: to `snapshot.tmp/`, swapped in with
renames, so a crash mid-write leaves the last complete snapshot; a crash mid-append leaves a torn last
journal line, which restore ignores. Tables and objects are read from moto's in-process backends, never
through its HTTP serializer. Restore runs after `infra/resources.yaml` was deployed into a fresh moto: the
base and then the journal are written back with BatchWriteItem, objects with PutObject.

KMS: moto generates random key material and ids, so after a restart the stack's new key could not decrypt
blobs sealed under the old one (crypto.py stores KMS-wrapped data keys, which embed the key id). The
snapshot therefore records the key's material and every id it has had; restore copies that material into
the newly deployed key and registers the old ids as names of it in moto's in-process KMS backend (the moto
server runs inside the local stack's process). Ciphertexts from any earlier run stay decryptable; the
alias and MAILBRIDGE_KMS_KEY_ID name the new key. This touches moto internals (`moto.kms.models`) and
only ever runs against the local emulator.

SQS messages are not persisted: a job in flight at shutdown is lost locally, and the scheduler's next
tick enqueues the mailbox again.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from infra import local_moto

MANIFEST = "manifest.json"
JOURNAL = "journal.jsonl"


def _encode(value: Any) -> Any:
    """boto3's DynamoDB JSON with bytes → base64 text (and back in `_decode`)."""
    if isinstance(value, dict):
        return {k: (_b64(v) if k == "B" else [_b64(b) for b in v] if k == "BS" else _encode(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (base64.b64decode(v) if k == "B" else [base64.b64decode(b) for b in v] if k == "BS"
                    else _decode(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _object_meta(fake_key) -> dict:
    """What GetObject would answer besides the body: `Content-Type` and the user metadata (`x-amz-meta-*`
    headers without their prefix), as moto keeps them in the object's metadata."""
    metadata = dict(fake_key.metadata or {})
    content_type = next((value for name, value in metadata.items() if name.lower() == "content-type"), None)
    user = {name[len("x-amz-meta-"):]: value for name, value in metadata.items()
            if name.lower().startswith("x-amz-meta-")}
    return {"content_type": content_type, "metadata": user}


def _b64(data: Any) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


class LocalState:
    def __init__(self, data_dir: Path, session, prefix: str, key_id: str | None = None,
                 compact_after: int = 20_000) -> None:
        self.data_dir = Path(data_dir)
        self.session = session
        self.prefix = prefix
        self.key_id = key_id
        self.blobs = self.data_dir / "blobs"
        self.compact_after = compact_after
        self._journal_lines: int | None = None   # None: no base snapshot written or restored by this process
        self._base_items = 0
        self._blobs_on_disk: set[str] | None = None   # read from the blobs dir once, then kept up to date

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshot"

    def exists(self) -> bool:
        return (self.snapshot_dir / MANIFEST).exists()

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, *, compact: bool = True) -> dict:
        """Incremental when this process already has a base (written or restored): the items written since the
        last snapshot are appended to the journal; otherwise, or when the journal outgrew `compact_after`
        lines and twice the base (and `compact` allows it: not on the way out, where a full dump of a large
        store would hold up the exit), a full dump. Either way only new S3 objects are read."""
        local_moto.install()
        self.blobs.mkdir(parents=True, exist_ok=True)
        outgrown = self._journal_lines is not None and compact and \
            self._journal_lines > max(self.compact_after, 2 * self._base_items)
        if self._journal_lines is None or outgrown:
            return self._full_snapshot()
        with local_moto.WRITE_LOCK:   # a consistent cut: no DynamoDB write runs while the dirty items are read
            lines = self._dirty_lines(local_moto.DIRTY.drain())
        manifest = json.loads((self.snapshot_dir / MANIFEST).read_text())
        if lines:
            with (self.snapshot_dir / JOURNAL).open("a") as journal:
                journal.write("".join(lines))
                journal.flush()
                os.fsync(journal.fileno())
            self._journal_lines += len(lines)
        manifest.update(buckets=self._dump_buckets(), kms=self._dump_kms(), journal_lines=self._journal_lines)
        _write_atomically(self.snapshot_dir / MANIFEST, json.dumps(manifest, indent=1))
        self._collect_garbage(manifest)
        return manifest

    def _full_snapshot(self) -> dict:
        tmp = self.data_dir / "snapshot.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "dynamodb").mkdir(parents=True)
        with local_moto.WRITE_LOCK:
            local_moto.DIRTY.drain()
            tables = self._dump_tables(tmp / "dynamodb")
        manifest = {"version": 2, "tables": tables, "buckets": self._dump_buckets(), "kms": self._dump_kms(),
                    "journal_lines": 0}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        old = self.data_dir / "snapshot.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.snapshot_dir.exists():
            self.snapshot_dir.rename(old)
        tmp.rename(self.snapshot_dir)
        shutil.rmtree(old, ignore_errors=True)
        self._journal_lines, self._base_items = 0, sum(tables.values())
        self._collect_garbage(manifest)
        return manifest

    def _tables(self) -> dict:
        backend = _dynamodb_backend(self.session.region_name)
        return {name: table for name, table in list(backend.tables.items()) if name.startswith(self.prefix)}

    def _dump_tables(self, target: Path) -> dict[str, int]:
        """Every item of every table, read from moto's backend in this process (no HTTP, no serializer)."""
        counts = {}
        for name, table in sorted(self._tables().items()):
            items = [item.to_json()["Attributes"] for item in table.all_items()]
            with (target / f"{name}.jsonl").open("w") as out:
                out.writelines(json.dumps(item, default=_b64) + "\n" for item in items)
            counts[name] = len(items)
        return counts

    def _dirty_lines(self, keys) -> list[str]:
        """One journal line per written item: {"table", "key", "item"} — "item" null when it was deleted."""
        tables = self._tables()
        lines = []
        for name, hash_key, range_key in keys:
            table = tables.get(name)
            if table is None:
                continue
            key = {table.hash_key_attr: hash_key.to_json()}
            if range_key is not None:
                key[table.range_key_attr] = range_key.to_json()
            item = table.get_item(hash_key, range_key)
            lines.append(json.dumps({"table": name, "key": key,
                                     "item": item.to_json()["Attributes"] if item is not None else None},
                                    default=_b64) + "\n")
        return lines

    def _dump_buckets(self) -> dict[str, list[dict]]:
        """Object names and ETags from moto's backend; a body is written only the first time its
        (bucket, key, ETag) is seen — blobs are content-addressed by it — and read from the backend in this
        process (an in-process GetObject through botocore cost more than the rest of a snapshot: ~200 new
        objects every 10 s while a mailbox imports). Blobs already on disk are remembered, not stat'ed."""
        if self._blobs_on_disk is None:
            self._blobs_on_disk = {path.name.split(".", 1)[0] for path in self.blobs.iterdir()
                                   if not path.name.endswith(".json")}
        buckets: dict[str, list[dict]] = {}
        for name, bucket in list(_s3_backend().buckets.items()):
            if not name.startswith(self.prefix):
                continue
            objects = buckets.setdefault(name, [])
            for key, fake_key in sorted(list(bucket.keys.items())):
                if fake_key is None or getattr(fake_key, "is_delete_marker", False):
                    continue
                blob = hashlib.sha256(f"{name}\0{key}\0{fake_key.etag}".encode()).hexdigest()
                if blob not in self._blobs_on_disk:
                    (self.blobs / f"{blob}.json").write_text(json.dumps(_object_meta(fake_key)))
                    (self.blobs / blob).write_bytes(fake_key.value)
                    self._blobs_on_disk.add(blob)
                objects.append({"key": key, "blob": blob})
        return buckets

    def _dump_kms(self) -> list[dict]:
        if not self.key_id:
            return []
        backend = _kms_backend(self.session.region_name)
        key = backend.keys.get(self.key_id)
        if key is None:
            return []
        ids = sorted(key_id for key_id, candidate in backend.keys.items() if candidate is key)
        return [{"ids": ids, "key_material": _b64(key.key_material)}]

    def _collect_garbage(self, manifest: dict) -> None:
        live = {obj["blob"] for objects in manifest["buckets"].values() for obj in objects}
        for blob in (self._blobs_on_disk or set()) - live:
            (self.blobs / blob).unlink(missing_ok=True)
            (self.blobs / f"{blob}.json").unlink(missing_ok=True)
        self._blobs_on_disk = set(live)

    # ------------------------------------------------------------------ restore
    def restore(self, log=print) -> dict:
        manifest = json.loads((self.snapshot_dir / MANIFEST).read_text())
        dynamodb = self.session.client("dynamodb")
        existing = set(dynamodb.list_tables()["TableNames"])
        for table in manifest["tables"]:
            if table not in existing:
                log(f"restore: table {table} is no longer in infra/resources.yaml; its items are skipped")
                continue
            self._load_table(dynamodb, table)
        self._journal_lines = self._replay_journal(dynamodb, existing)
        self._base_items = sum(manifest["tables"].values())
        s3 = self.session.client("s3")
        for bucket, objects in manifest["buckets"].items():
            for obj in objects:
                meta = json.loads((self.blobs / f"{obj['blob']}.json").read_text())
                extra = {"ContentType": meta["content_type"]} if meta.get("content_type") else {}
                s3.put_object(Bucket=bucket, Key=obj["key"], Body=(self.blobs / obj["blob"]).read_bytes(),
                              Metadata=meta.get("metadata") or {}, **extra)
        self._restore_kms(manifest.get("kms", []))
        local_moto.DIRTY.drain()   # what was just restored is on disk already
        return manifest

    def _load_table(self, dynamodb, table: str) -> None:
        path = self.snapshot_dir / "dynamodb" / f"{table}.jsonl"
        items = [_decode(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
        _batch_write(dynamodb, table, [{"PutRequest": {"Item": item}} for item in items])

    def _replay_journal(self, dynamodb, existing: set[str]) -> int:
        """Applies the journal in order (the last line of a key wins); a torn last line (a crash while
        appending) is ignored."""
        path = self.snapshot_dir / JOURNAL
        if not path.exists():
            return 0
        final: dict[str, dict[str, tuple[dict, dict | None]]] = {}
        count = 0
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            count += 1
            if record["table"] in existing:
                final.setdefault(record["table"], {})[json.dumps(record["key"], sort_keys=True)] = (
                    record["key"], record["item"])
        for table, states in final.items():
            _batch_write(dynamodb, table, [
                {"PutRequest": {"Item": _decode(item)}} if item is not None
                else {"DeleteRequest": {"Key": _decode(key)}}
                for key, item in states.values()])
        return count

    def _restore_kms(self, keys: list[dict]) -> None:
        if not keys or not self.key_id:
            return
        backend = _kms_backend(self.session.region_name)
        current = backend.keys[self.key_id]
        for saved in keys:
            current.key_material = base64.b64decode(saved["key_material"])
            for old_id in saved["ids"]:
                backend.keys.setdefault(old_id, current)


def _batch_write(dynamodb, table: str, requests: list[dict]) -> None:
    for start in range(0, len(requests), 25):
        pending = {table: requests[start:start + 25]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _account() -> str:
    from moto.core import DEFAULT_ACCOUNT_ID
    return os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)


def _dynamodb_backend(region: str):
    from moto.dynamodb.models import dynamodb_backends
    return dynamodb_backends[_account()][region]


def _s3_backend():
    from moto.s3.models import s3_backends
    return s3_backends[_account()]["global"]


def _kms_backend(region: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.kms.models import kms_backends
    return kms_backends[os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)][region]
