"""Guards the Lambda package carrying googleapiclient's ~110 MB of discovery documents (only Gmail's is used)
— or losing Gmail's, which `static_discovery=True` needs."""
from __future__ import annotations

import zipfile

from infra.package import prune_deployment


def test_only_gmail_discovery_document_is_kept(tmp_path):
    source, target = tmp_path / "in.zip", tmp_path / "out.zip"
    with zipfile.ZipFile(source, "w") as zf:
        for name in ("gmail.v1.json", "drive.v3.json", "youtube.v3.json", "index.json"):
            zf.writestr(f"googleapiclient/discovery_cache/documents/{name}", "{}" * 5000)
        zf.writestr("googleapiclient/discovery.py", "code")
        zf.writestr("app.py", "app")
    before, after = prune_deployment(source, target)
    with zipfile.ZipFile(target) as zf:
        names = set(zf.namelist())
    assert names == {"googleapiclient/discovery_cache/documents/gmail.v1.json", "googleapiclient/discovery.py",
                     "app.py"}
    assert after < before
