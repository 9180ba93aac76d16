"""External roles and collections: the lock, their content hashes, where they are installed, and
the names image definitions give them.

``requirements.yml`` (ansible-galaxy's own format) says what the images may use;
``requirements.lock`` (written by ``factory deps lock``, factory.bake.deps) pins every role and
collection to a version, a source and the sha256 of its content. The content hash covers the
files that define behaviour, never the install metadata ansible-galaxy writes (the install date
in ``meta/.galaxy_install_info``, a collection's ``MANIFEST.json`` and ``FILES.json``), so the
same content installed twice hashes the same. An installed lock lives in
``<cache>/galaxy/<key>/{roles,collections}``, where ``key`` is a hash of the whole lock.

Names, as an image definition writes them:

- ``common``: a role of this checkout (``roles/common``);
- ``geerlingguy.git``: a standalone role of the lock;
- ``devsec.hardening.ssh_hardening``: role ``ssh_hardening`` of the locked collection
  ``devsec.hardening``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.core import jsonio
from factory.core.errors import ConfigError

REQUIREMENTS = "requirements.yml"
LOCK = "requirements.lock"
LOCK_VERSION = 1
ROLE, COLLECTION = "role", "collection"

# Install metadata, not behaviour: left out of the content hash.
ROLE_METADATA = frozenset({"meta/.galaxy_install_info"})
COLLECTION_METADATA = frozenset({"MANIFEST.json", "FILES.json"})

LOCAL_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
ROLE_NAME_RE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+")  # namespace.role (Galaxy allows - and .)
FQCN_RE = re.compile(r"([a-z0-9_]+)\.([a-z0-9_]+)\.([a-z0-9_]+)")


@dataclass(frozen=True, kw_only=True)
class Locked:
    """One pinned dependency of ``requirements.lock``."""

    kind: str  # role | collection
    name: str  # geerlingguy.git | devsec.hardening
    version: str
    source: str  # what to install it from again (a Galaxy name, a git URL, a tarball path)
    type: str  # galaxy | git | file | url | dir
    sha256: str  # content_sha256 of the installed files

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "type": self.type,
            "sha256": self.sha256,
        }

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name} {self.version}"


@dataclass(frozen=True, kw_only=True)
class Lock:
    deps: tuple[Locked, ...]
    # sha256 of the requirements.yml it was made from: an edit without a new lock is refused, so a
    # bumped version is never silently ignored by the plan
    requirements_sha256: str

    @property
    def key(self) -> str:
        """The installed lock's folder name: the same deps with the same content, the same folder."""
        text = json.dumps([d.to_json() for d in self.deps], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def find(self, kind: str, name: str) -> Locked | None:
        return next((d for d in self.deps if d.kind == kind and d.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "lock_version": LOCK_VERSION,
            "requirements_sha256": self.requirements_sha256,
            "dependencies": [d.to_json() for d in self.deps],
        }


def requirements_sha256(root: Path) -> str:
    """sha256 of the checkout's requirements.yml ("" when there is none)."""
    try:
        return hashlib.sha256((root / REQUIREMENTS).read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"{root / REQUIREMENTS}: cannot read: {exc.strerror or exc}") from None


def lock_text(lock: Lock) -> str:
    return json.dumps(lock.to_json(), indent=2, sort_keys=True) + "\n"


def read_lock(root: Path) -> Lock | None:
    """The checkout's ``requirements.lock``; None when there is none."""
    path = root / LOCK
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    data = jsonio.loads(raw, source=str(path), what="a valid lock file")
    if not isinstance(data, dict) or data.get("lock_version") != LOCK_VERSION:
        raise ConfigError(
            f"{path}: lock_version: {LOCK_VERSION} is expected", hint="write it again: factory deps lock"
        )
    deps = data.get("dependencies")
    if not isinstance(deps, list):
        raise ConfigError(f"{path}: dependencies: a list is expected", hint="factory deps lock")
    locked = []
    fields = ("kind", "name", "version", "source", "type", "sha256")
    for index, dep in enumerate(deps):
        if not isinstance(dep, dict) or any(not isinstance(dep.get(f), str) for f in fields):
            raise ConfigError(
                f"{path}: dependencies.{index}: {', '.join(fields)} (strings) are expected",
                hint="factory deps lock",
            )
        if dep["kind"] not in (ROLE, COLLECTION) or not re.fullmatch(r"[0-9a-f]{64}", dep["sha256"]):
            raise ConfigError(f"{path}: dependencies.{index}: bad kind or sha256", hint="factory deps lock")
        locked.append(Locked(**{f: dep[f] for f in fields}))
    recorded = data.get("requirements_sha256")
    if recorded != requirements_sha256(root):
        raise ConfigError(
            f"{root / REQUIREMENTS}: changed since {path} was written",
            hint="lock it again (factory deps lock) and commit both files",
        )
    return Lock(deps=tuple(locked), requirements_sha256=recorded)


def content_sha256(folder: Path, kind: str) -> str:
    """sha256 over the relative path, executable bit and content of every file under ``folder``
    (symlinks by their target), install metadata excluded."""
    skip = ROLE_METADATA if kind == ROLE else COLLECTION_METADATA
    rows: list[list[str | bool]] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel in skip or "__pycache__" in path.parts:
            continue
        if path.is_symlink():
            rows.append([rel, "link", str(path.readlink())])
        elif path.is_file():
            executable = bool(path.stat().st_mode & 0o111)
            rows.append([rel, hashlib.sha256(path.read_bytes()).hexdigest(), executable])
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def dependency_changes(
    recorded: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> list[str]:
    """What differs between the dependencies a version recorded (its entry's ``dependencies``)
    and those of another version, or of the image now (``Locked.to_json()``), one line each:
    ``collection devsec.hardening 10.5.2 → 10.6.0``, ``… 10.6.0: content changed``."""
    before = {(str(d["kind"]), str(d["name"])): d for d in recorded}
    now = {(str(d["kind"]), str(d["name"])): d for d in current}
    lines = []
    for key in sorted(before.keys() | now.keys()):
        kind, name = key
        old, new = before.get(key), now.get(key)
        if old is None:
            assert new is not None
            lines.append(f"{kind} {name} {new['version']}: new")
        elif new is None:
            lines.append(f"{kind} {name} {old['version']}: no longer used")
        elif old["version"] != new["version"]:
            lines.append(f"{kind} {name} {old['version']} → {new['version']}")
        elif old["sha256"] != new["sha256"]:
            lines.append(f"{kind} {name} {new['version']}: content changed")
    return lines


def installed_path(base: Path, dep: Locked) -> Path:
    """Where ``dep`` lives in an installed lock's folder ``base``."""
    if dep.kind == ROLE:
        return base / "roles" / dep.name
    namespace, name = dep.name.split(".", 1)
    return base / "collections" / "ansible_collections" / namespace / name


@dataclass(frozen=True, kw_only=True)
class Role:
    """A role an image names, found: in the checkout (``dep`` None) or in the installed lock."""

    name: str
    path: Path
    dep: Locked | None = None


@dataclass(frozen=True, kw_only=True)
class Finder:
    """Finds the roles image definitions name: the checkout's ``roles/``, then the installed lock."""

    root: Path
    cache: Path

    @property
    def roles_dir(self) -> Path:
        return self.root / "roles"

    def lock(self) -> Lock | None:
        return read_lock(self.root)

    def installed(self, lock: Lock) -> Path:
        return self.cache / "galaxy" / lock.key

    def find(self, name: str, where: str) -> Role:
        """The role called ``name``; ``where`` (file: field) names the reference in an error."""
        if LOCAL_NAME_RE.fullmatch(name):
            path = self.roles_dir / name
            if not (path / "tasks" / "main.yml").is_file():
                known = sorted(p.name for p in self.roles_dir.iterdir() if p.is_dir())
                raise ConfigError(
                    f"{where}: unknown role {name!r}", hint=f"roles in {self.roles_dir}: {', '.join(known)}"
                )
            return Role(name=name, path=path)
        fqcn = FQCN_RE.fullmatch(name)
        if fqcn is None and not ROLE_NAME_RE.fullmatch(name):
            raise ConfigError(
                f"{where}: {name!r} is not a role name",
                hint="a role of roles/ (common), a Galaxy role (namespace.role) or a collection "
                "role (namespace.collection.role)",
            )
        kind, dep_name = (COLLECTION, f"{fqcn[1]}.{fqcn[2]}") if fqcn else (ROLE, name)
        lock = self.lock()
        dep = lock.find(kind, dep_name) if lock is not None else None
        if lock is None or dep is None:
            raise ConfigError(
                f"{where}: {name!r}: the {kind} {dep_name} is not in {self.root / LOCK}",
                hint=f"add it to {REQUIREMENTS} and run: factory deps lock",
            )
        base = installed_path(self.installed(lock), dep)
        path = base / "roles" / fqcn[3] if fqcn else base
        if not base.is_dir():
            raise ConfigError(
                f"{where}: {name!r}: {dep.label} is locked but not installed ({base})",
                hint="factory deps install",
            )
        if not (path / "tasks" / "main.yml").is_file():
            raise ConfigError(f"{where}: {name!r}: {dep.label} has no role {path.name!r} ({path})")
        return Role(name=name, path=path, dep=dep)
