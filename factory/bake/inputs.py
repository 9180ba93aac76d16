"""The files a build reads, with their hashes, and the input fingerprint built from them.

The fingerprint says whether a rebuild could produce something different: it covers the rendered
template (with the per-build values held fixed), every file of every role of roles/ used
(dependencies included), the locked content hash of every external role or collection used
(factory.core.galaxy), the role variables, the inventory, the Testinfra files, the parent (its version, or
for a bootstrapped base the suite and mirror) and the factory's own version. File hashes are
cached by path, mtime and size, so a fingerprint costs milliseconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from factory import __version__
from factory.catalog.trust import digest
from factory.core import jsonio
from factory.core.config import ImageSpec, Layout
from factory.core.errors import ConfigError
from factory.core.files import atomic_write
from factory.core.galaxy import Locked


def role_closure(layout: Layout, roles: list[str], memo: Memo | None = None) -> list[str]:
    """``roles`` plus every role they depend on (``meta/main.yml`` dependencies), in first-seen order."""
    memo = memo if memo is not None else Memo()
    seen: list[str] = []
    queue = list(roles)
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.append(name)
        queue.extend(memo.dependencies(layout.roles / name))
    return seen


def input_files(spec: ImageSpec, layout: Layout, memo: Memo | None = None) -> list[Path]:
    memo = memo if memo is not None else Memo()
    # ansible.cfg, and the connection every container build (and every emulated AWS bake's podman
    # stand-in) is provisioned through: plugins/connection/runc.py.
    files: list[Path] = [spec.definition, layout.root / "ansible.cfg", layout.connection_plugin]
    templates = Path(str(resources.files("factory").joinpath("templates")))
    files.extend(templates / f"{target.value}.json.j2" for target in spec.targets)
    for role in role_closure(layout, [r.name for r in spec.roles if r.dep is None], memo):
        files.extend(memo.files(layout.roles / role))
    files.extend(memo.files(layout.inventory))
    conftest = layout.image_tests / "conftest.py"
    if conftest.is_file():
        files.append(conftest)
    files.extend(layout.image_tests / t for t in spec.tests)
    return sorted(set(files))


class Memo:
    """Directory listings and role dependencies, read once per plan instead of once per image.

    Scoped to one plan or one bake (it lives in a HashCache), never to the process: a tree that
    changes between two plans is read again.
    """

    def __init__(self) -> None:
        self._files: dict[Path, list[Path]] = {}
        self._deps: dict[Path, list[str]] = {}

    def files(self, folder: Path) -> list[Path]:
        if folder not in self._files:
            self._files[folder] = [p for p in folder.rglob("*") if p.is_file()]
        return self._files[folder]

    def dependencies(self, role: Path) -> list[str]:
        if role not in self._deps:
            self._deps[role] = role_dependencies(role / "meta" / "main.yml")
        return self._deps[role]


def role_dependencies(meta: Path) -> list[str]:
    """The role names under ``dependencies`` in a role's ``meta/main.yml`` (a name, or a mapping
    with ``role:``); none when the file is missing. Anything else is a ConfigError naming the field."""
    try:
        raw = meta.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"{meta}: cannot read: {exc.strerror or exc}") from None
    data = jsonio.load_yaml(raw, source=str(meta), what="a valid YAML role meta file") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{meta}: a mapping is expected, not {type(data).__name__}")
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise ConfigError(f"{meta}: dependencies: a list is expected, not {type(deps).__name__}")
    names = []
    for index, dep in enumerate(deps):
        name = dep.get("role") if isinstance(dep, dict) else dep
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"{meta}: dependencies[{index}]: a role name, or a mapping with a role: name, is expected",
                hint="write `- common` or `- role: common`",
            )
        names.append(name)
    return names


class HashCache:
    """sha256 of files, remembered by (mtime_ns, size) in ``<cache>/file-hashes.json``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        self.memo = Memo()
        if path is not None and path.is_file():
            self.entries = _read_cache(path)

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        key = str(file)
        known = self.entries.get(key)
        if known and known[0] == stat.st_mtime_ns and known[1] == stat.st_size:
            return str(known[2])
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        self.entries[key] = [stat.st_mtime_ns, stat.st_size, digest]
        self.dirty = True
        return digest

    def save(self) -> None:
        """Replace the file through a temporary file of this writer's own: bakes that run side by
        side (`factory rebuild -j 2`) share the cache, and the last to save wins."""
        if self.path is not None and self.dirty:
            atomic_write(self.path, json.dumps(self.entries, sort_keys=True).encode())
            self.dirty = False


def _read_cache(path: Path) -> dict[str, list[Any]]:
    """The cache's entries that have the shape ``[mtime_ns, size, sha256]``; a damaged cache (or
    one damaged on purpose) is only a slower run."""
    try:
        data = jsonio.loads(path.read_bytes(), source=str(path))
    except (OSError, ConfigError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: value
        for key, value in data.items()
        if isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int) for v in value[:2])
        and isinstance(value[2], str)
    }


def input_hashes(spec: ImageSpec, layout: Layout, cache: HashCache | None = None) -> dict[str, str]:
    """Repository-relative path (or ``factory/…`` for the package's own files) → sha256."""
    package = Path(str(resources.files("factory"))).parent
    cache = cache or HashCache()
    hashes = {}
    for path in input_files(spec, layout, cache.memo):
        if "__pycache__" in path.parts:
            continue
        base = layout.root if path.is_relative_to(layout.root) else package
        hashes[str(path.relative_to(base))] = cache.sha256(path)
    return hashes


def used_dependencies(spec: ImageSpec) -> list[Locked]:
    """The locked roles and collections the image's roles come from, once each, by kind and name."""
    found = {(r.dep.kind, r.dep.name): r.dep for r in spec.roles if r.dep is not None}
    return [found[key] for key in sorted(found)]


def parent_identity(record: Mapping[str, Any]) -> dict[str, Any]:
    """What of a parent record shapes the child: the parent version, or the bootstrap source."""
    if "image" in record:
        return {"image": record["image"], "version": record["version"]}
    boot = record.get("bootstrap", {})
    keys = ("suite", "variant", "include", "mirror", "security_mirror")
    return {"bootstrap": {k: boot.get(k) for k in keys}}


def fingerprint(
    spec: ImageSpec,
    inputs: Mapping[str, str],
    *,
    parent: Mapping[str, Any],
    template_sha256: str,
) -> str:
    """One sha256 over everything that shapes the image (see the module docstring)."""
    role_vars = [[role.name, dict(role.vars)] for role in spec.roles]
    shaping: dict[str, Any] = {
        "template": template_sha256,
        "inputs": dict(inputs),
        "role_vars": role_vars,
        "parent": dict(parent),
        "factory": __version__,
    }
    deps = used_dependencies(spec)
    if deps:  # absent, not empty, for images without any: their fingerprints stay what they were
        shaping["dependencies"] = [[d.kind, d.name, d.version, d.sha256] for d in deps]
    unchecked = [role.name for role in spec.roles if role.vars_unchecked]
    if unchecked:
        shaping["vars_unchecked"] = unchecked
    return digest(shaping)
