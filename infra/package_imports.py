"""What the Lambda functions import from the shipped package, and that package's bytecode.

Each function's handler lives in `app.py`; the event handlers import their module on first use (app.py), the
Gmail and Graph providers import their SDKs on the worker paths that use them. Importing `app` and every
`chalicelib` module (`our_modules`) from an unzipped package — with only that package and the standard
library on `sys.path`, as on Lambda — shows both a file the pruning dropped (ImportError) and the files the
functions read.

Bytecode: Lambda's `/var/task` is read-only, so the interpreter cannot write `__pycache__` there and compiles
every imported `.py` again on each cold start (several seconds for the ~840 modules of the API's import on
this machine; docs/benchmarks.md). `add_bytecode` ships the `.pyc` of every module `our_modules` load,
next to the sources (PEP 3147 `__pycache__/<name>.<cache tag>.pyc`), as unchecked hash-based pycs (PEP 552):
the interpreter uses them without comparing timestamps, which a zip does not keep exactly, and the deployed
code is immutable. The cache tag is the building interpreter's; Chalice picks the Lambda runtime from that
same interpreter version (python3.11), and a runtime of another version simply ignores the files.
"""
from __future__ import annotations

import importlib.util
import json
import py_compile
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def our_modules(package_dir: Path) -> tuple[str, ...]:
    """`app` and every `chalicelib` module in the package: together they import everything any function
    imports, including what the handlers load on first use (the engine, the provider SDKs)."""
    found = sorted(".".join(path.relative_to(package_dir).with_suffix("").parts)
                   for path in (package_dir / "chalicelib").rglob("*.py"))
    return ("app", *(name.removesuffix(".__init__") for name in found))


_PROBE = """
import importlib, json, sys
root = sys.argv[1]
sys.path.insert(0, root)
for name in sys.argv[2:]:
    importlib.import_module(name)
print(json.dumps(sorted({m.__file__ for m in list(sys.modules.values())
                        if (getattr(m, "__file__", None) or "").startswith(root + "/")})))
"""


def loaded_files(package_dir: Path, modules: tuple[str, ...] | None = None) -> list[str]:
    """Paths (relative to `package_dir`) of the files importing `modules` (default: `our_modules`) loads from
    the package, in a fresh interpreter that sees only the package and the standard library (`-I -S`) and
    writes no bytecode (`-B`). Raises CalledProcessError (with the traceback in `stderr`) when an import fails."""
    root = str(package_dir.resolve())
    modules = our_modules(package_dir) if modules is None else modules
    result = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", _PROBE, root, *modules], cwd=root,
                            check=True, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"})
    return [path[len(root) + 1:] for path in json.loads(result.stdout.strip().splitlines()[-1])]


def add_bytecode(package_zip: Path) -> int:
    """Add to `package_zip` the unchecked hash-based `.pyc` of every source file `our_modules` load.
    Returns the number of files compiled."""
    with tempfile.TemporaryDirectory(prefix="mailbridge-bytecode-") as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(package_zip) as archive:
            archive.extractall(root)
        sources = [name for name in loaded_files(root) if name.endswith(".py")]
        with zipfile.ZipFile(package_zip, "a", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for name in sources:
                cached = Path(importlib.util.cache_from_source(name))
                py_compile.compile(str(root / name), cfile=str(root / cached), dfile=name, doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
                info = zipfile.ZipInfo(cached.as_posix(), (2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, (root / cached).read_bytes(), compresslevel=9)
    return len(sources)
