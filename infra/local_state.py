"""Persistence for the local stack: moto keeps everything in memory, so its data is snapshotted to disk.

Layout of the data dir (default `.local/state/`):

    snapshot/manifest.json        tables -> item files, buckets -> objects, KMS key material
    snapshot/dynamodb/<table>.jsonl   one item per line, DynamoDB JSON (binary values base64)
    blobs/<sha256>                S3 object bodies, content-addressed by (bucket, key, ETag) so an
                                  unchanged object is written once, not at every snapshot
    local-secrets.json            operator key, signing key, demo tenant and key (local stage only)

A snapshot is written to `snapshot.tmp/` and swapped in with renames, so a crash mid-write leaves the last
complete snapshot. Restore runs after `infra/resources.yaml` was deployed into a fresh moto: items are
written back with BatchWriteItem, objects with PutObject.

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

MANIFEST = "manifest.json"


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


def _b64(data: Any) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


class LocalState:
    def __init__(self, data_dir: Path, session, prefix: str, key_id: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.session = session
        self.prefix = prefix
        self.key_id = key_id
        self.blobs = self.data_dir / "blobs"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshot"

    def exists(self) -> bool:
        return (self.snapshot_dir / MANIFEST).exists()

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> dict:
        tmp = self.data_dir / "snapshot.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "dynamodb").mkdir(parents=True)
        self.blobs.mkdir(parents=True, exist_ok=True)
        manifest = {"version": 1, "tables": self._dump_tables(tmp / "dynamodb"), "buckets": self._dump_buckets(),
                    "kms": self._dump_kms()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        old = self.data_dir / "snapshot.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.snapshot_dir.exists():
            self.snapshot_dir.rename(old)
        tmp.rename(self.snapshot_dir)
        shutil.rmtree(old, ignore_errors=True)
        self._collect_garbage(manifest)
        return manifest

    def _dump_tables(self, target: Path) -> dict[str, int]:
        dynamodb = self.session.client("dynamodb")
        counts = {}
        for page in dynamodb.get_paginator("list_tables").paginate():
            for table in page["TableNames"]:
                if not table.startswith(self.prefix):
                    continue
                with (target / f"{table}.jsonl").open("w") as out:
                    count = 0
                    for scan in dynamodb.get_paginator("scan").paginate(TableName=table):
                        for item in scan["Items"]:
                            out.write(json.dumps(_encode(item)) + "\n")
                            count += 1
                counts[table] = count
        return counts

    def _dump_buckets(self) -> dict[str, list[dict]]:
        s3 = self.session.client("s3")
        buckets: dict[str, list[dict]] = {}
        for bucket in s3.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            if not name.startswith(self.prefix):
                continue
            objects = buckets.setdefault(name, [])
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
                for entry in page.get("Contents", []):
                    blob = hashlib.sha256(f"{name}\0{entry['Key']}\0{entry['ETag']}".encode()).hexdigest()
                    record = {"key": entry["Key"], "blob": blob}
                    path = self.blobs / blob
                    meta_path = self.blobs / f"{blob}.json"
                    if not (path.exists() and meta_path.exists()):
                        obj = s3.get_object(Bucket=name, Key=entry["Key"])
                        path.write_bytes(obj["Body"].read())
                        meta_path.write_text(json.dumps({"content_type": obj.get("ContentType"),
                                                         "metadata": obj.get("Metadata", {})}))
                    objects.append(record)
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
        for path in self.blobs.iterdir():
            if path.name.split(".", 1)[0] not in live:
                path.unlink(missing_ok=True)

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
        s3 = self.session.client("s3")
        for bucket, objects in manifest["buckets"].items():
            for obj in objects:
                meta = json.loads((self.blobs / f"{obj['blob']}.json").read_text())
                extra = {"ContentType": meta["content_type"]} if meta.get("content_type") else {}
                s3.put_object(Bucket=bucket, Key=obj["key"], Body=(self.blobs / obj["blob"]).read_bytes(),
                              Metadata=meta.get("metadata") or {}, **extra)
        self._restore_kms(manifest.get("kms", []))
        return manifest

    def _load_table(self, dynamodb, table: str) -> None:
        path = self.snapshot_dir / "dynamodb" / f"{table}.jsonl"
        items = [_decode(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
        for start in range(0, len(items), 25):
            requests = {table: [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]}
            while requests:
                requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}

    def _restore_kms(self, keys: list[dict]) -> None:
        if not keys or not self.key_id:
            return
        backend = _kms_backend(self.session.region_name)
        current = backend.keys[self.key_id]
        for saved in keys:
            current.key_material = base64.b64decode(saved["key_material"])
            for old_id in saved["ids"]:
                backend.keys.setdefault(old_id, current)


def _kms_backend(region: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.kms.models import kms_backends
    return kms_backends[os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)][region]
