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

Third-party modules are shipped sourceless (`sourceless=True`, the default): their `.pyc` takes the place of the
`.py` (`foo.pyc` where `foo.py` was — PEP 3147 "sourceless imports": the import system loads a `.pyc` found
beside where the source would be when there is no source; `importlib.machinery.SourcelessFileLoader`), compiled
without column positions (`-X no_debug_ranges`, Python 3.11: tracebacks keep file and line, lose the `^^^`
markers). Compiled code deflates worse than source (the ~1,260 third-party sources: 3.3 MiB zipped, 6.0 MiB as
bytecode, 4.6 without column positions), so only the modules the functions import get bytecode; the rest stay
sources, compiled if ever imported. mailbridge's own code (`app.py`, `chalicelib`) keeps its sources beside
its bytecode, so its tracebacks show the lines.
"""
from __future__ import annotations

import importlib.util
import json
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


_COMPILE = """
import json, py_compile, sys
for source, target, shown in json.load(sys.stdin):
    py_compile.compile(source, cfile=target, dfile=shown, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def compile_files(jobs: list[tuple[Path, Path, str]], *, debug_ranges: bool) -> None:
    """Compile (source, target .pyc, name shown in tracebacks) as unchecked hash-based pycs, in a child
    interpreter of this version (`-X no_debug_ranges` only takes effect at the interpreter's start)."""
    flags = [] if debug_ranges else ["-X", "no_debug_ranges"]
    subprocess.run([sys.executable, *flags, "-c", _COMPILE], check=True, text=True,
                   input=json.dumps([[str(source), str(target), shown] for source, target, shown in jobs]))


def ours(name: str) -> bool:
    """mailbridge's own code (it keeps its sources: tracebacks show its lines)."""
    return name == "app.py" or name.startswith("chalicelib/")


def add_bytecode(package_zip: Path, *, sourceless: bool = True) -> int:
    """Rewrite `package_zip` with the unchecked hash-based `.pyc` of every source file `our_modules` load:
    beside the source in `__pycache__` for `ours`, in place of the source for third-party modules (with
    `sourceless`; else beside it too). Returns the number of files compiled."""
    with tempfile.TemporaryDirectory(prefix="mailbridge-bytecode-") as tmp:
        root = Path(tmp) / "package"
        with zipfile.ZipFile(package_zip) as archive:
            archive.extractall(root)
            entries = archive.infolist()
        sources = [name for name in loaded_files(root) if name.endswith(".py")]
        cached = {name: Path(importlib.util.cache_from_source(name)).as_posix() for name in sources
                  if ours(name) or not sourceless}
        replaced = {name: name + "c" for name in sources if name not in cached}
        compile_files([(root / name, root / pyc, name) for name, pyc in cached.items()], debug_ranges=True)
        compile_files([(root / name, root / pyc, name) for name, pyc in replaced.items()], debug_ranges=False)
        with zipfile.ZipFile(package_zip, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for info in entries:
                if info.filename not in replaced:
                    archive.writestr(info, (root / info.filename).read_bytes() if not info.is_dir() else b"",
                                     compresslevel=9)
            for pyc in [*cached.values(), *replaced.values()]:
                info = zipfile.ZipInfo(pyc, (2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, (root / pyc).read_bytes(), compresslevel=9)
    return len(sources)
