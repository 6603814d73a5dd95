"""Who weighs what in the shipped zip: each entry attributed to the installed distribution that owns it, and each
distribution to the runtime requirements (`requirements.txt`) that pull it in.

The point is the floor under the ≤ 10 MB target (#12 item 13): what the third-party closure of the chosen
dependencies zips to, before a byte of mailbridge's own code, and which requirement needs each heavy part
(cryptography, for instance, is a hard dependency of google-auth — `google/auth/crypt/rsa.py` imports it at
module level since 2.4x, and `google.oauth2.credentials` imports that — of msal and of PyJWT[crypto], besides
mailbridge's own AES-GCM).

A file is attributed through the distributions' installed RECORDs (`importlib.metadata.files`), so namespace
packages (`google/`) split correctly; shipped sourceless bytecode (`x.pyc` in place of `x.py`) and `__pycache__`
entries count for the source they were compiled from. Sizes are the zip's compressed bytes plus each entry's
local header (30 bytes + its name), as the archive grows by them.
"""
from __future__ import annotations

import importlib.metadata as metadata
import re
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

OWN = "mailbridge (app.py, chalicelib, .chalice)"
UNKNOWN = "(unattributed)"


def _normalized(name: str) -> str:
    """The installed path a shipped entry stands for: `a/__pycache__/b.cpython-311.pyc` and sourceless `a/b.pyc`
    both count as `a/b.py`."""
    match = re.fullmatch(r"(.*/)?__pycache__/([^/]+?)\.[^/.]+\.pyc", name)
    if match:
        return f"{match.group(1) or ''}{match.group(2)}.py"
    return name[:-1] if name.endswith(".pyc") else name


def file_owners() -> dict[str, str]:
    owners: dict[str, str] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or ():
            owners[_normalized(str(file))] = name
    return owners


def _requirements(name: str) -> list[Requirement]:
    try:
        return [Requirement(line) for line in metadata.distribution(name).requires or ()]
    except metadata.PackageNotFoundError:
        return []


def _applies(requirement: Requirement, extra: str = "") -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": extra})


def requires(name: str) -> set[str]:
    """The distributions `name` depends on unconditionally on this interpreter, with the extras it names
    (`PyJWT[crypto]`); its own optional extras are not taken."""
    out = set()
    for requirement in _requirements(name):
        if _applies(requirement):
            out.add(canonicalize_name(requirement.name))
            out.update(canonicalize_name(dep.name) for extra in requirement.extras
                       for dep in _requirements(requirement.name) if not _applies(dep) and _applies(dep, extra))
    return out


def closure(root: str) -> set[str]:
    seen, todo = set(), [canonicalize_name(root)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(requires(name) - seen)
    return seen


def runtime_requirements(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(canonicalize_name(Requirement(line).name))
    return names


def attribute(shipped: Path, requirements: Path) -> dict:
    """Zipped bytes per distribution (with the requirements whose closure holds it), mailbridge's own share, and
    the third-party total: the floor no change to mailbridge's code can go under."""
    owners = file_owners()
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(shipped) as archive:
        for info in archive.infolist():
            name = info.filename
            top = name.split("/", 1)[0]
            if top in ("app.py", "chalicelib", ".chalice") or name.startswith("__pycache__/app."):
                owner = OWN
            else:
                owner = owners.get(_normalized(name))
                if owner is None and ".dist-info/" in name:
                    owner = canonicalize_name(top.split("-", 1)[0])
                owner = owner or UNKNOWN
            sizes[owner] = sizes.get(owner, 0) + info.compress_size + 30 + len(name)
    roots = runtime_requirements(requirements)
    closures = {root: closure(root) for root in roots}
    mb = 1_000_000
    distributions = {
        name: {"zip_mb": round(size / mb, 3),
               "required_by": sorted(root for root, members in closures.items() if name in members)}
        for name, size in sorted(sizes.items(), key=lambda item: -item[1])}
    third_party = sum(size for name, size in sizes.items() if name != OWN)
    return {"distributions": distributions,
            "own_zip_mb": round(sizes.get(OWN, 0) / mb, 2), "own_zip_bytes": sizes.get(OWN, 0),
            "third_party_zip_mb": round(third_party / mb, 2), "third_party_zip_bytes": third_party}
