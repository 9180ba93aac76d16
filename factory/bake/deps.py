"""`factory deps lock` and `factory deps install`: external roles and collections, installed by
ansible-galaxy itself into ``<cache>/galaxy/<key>/``, outside the checkout, and checked against
the content hashes of ``requirements.lock`` (the lock's format: factory.core.galaxy).

A lock installs from what it records (Galaxy, git, a tarball) unless ``vendor/`` holds the
tarball (``vendor/<namespace>-<collection>-<version>.tar.gz``, ``vendor/<role>-<version>.tar.gz``):
an air-gapped site then needs no network at all. Every install goes to a staging folder first and
moves into place only once every hash matched, so a half-made install is never used.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from factory.core import galaxy, jsonio, log
from factory.core.errors import ConfigError
from factory.core.files import atomic_write
from factory.core.galaxy import COLLECTION, ROLE, Lock, Locked
from factory.core.run import run

VENDOR = "vendor"


def read_requirements(root: Path) -> dict[str, list[Any]]:
    """``requirements.yml``'s ``roles`` and ``collections`` (a bare list means roles)."""
    path = root / galaxy.REQUIREMENTS
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: missing", hint="list roles and collections in ansible-galaxy's format (docs/roles.md)"
        ) from None
    data = jsonio.load_yaml(raw, source=str(path), what="a valid requirements file") or {}
    if isinstance(data, list):
        data = {"roles": data}
    if not isinstance(data, dict) or set(data) - {"roles", "collections"}:
        raise ConfigError(f"{path}: a mapping with roles: and collections: is expected")
    found: dict[str, list[Any]] = {}
    for section in ("roles", "collections"):
        entries = data.get(section)
        entries = [] if entries is None else entries
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: {section}: a list is expected, not {type(entries).__name__}")
        for index, entry in enumerate(entries):
            if not isinstance(entry, str | dict):
                raise ConfigError(f"{path}: {section}.{index}: a name or a mapping is expected")
        found[section] = entries
    return found


def lock(root: Path, cache: Path) -> Lock:
    """Install ``requirements.yml`` with ansible-galaxy, hash what it installed, write the lock."""
    wanted = read_requirements(root)
    with _staging(cache) as staging:
        with log.step("ansible-galaxy install -r requirements.yml"):
            _galaxy_install(root, root / galaxy.REQUIREMENTS, staging, wanted)
        deps = [
            *_installed_roles(staging, wanted["roles"]),
            *_installed_collections(staging, wanted["collections"]),
        ]
        result = Lock(
            deps=tuple(sorted(deps, key=lambda d: (d.kind, d.name))),
            requirements_sha256=galaxy.requirements_sha256(root),
        )
        _move_into_place(staging, cache / "galaxy" / result.key)
    atomic_write(root / galaxy.LOCK, galaxy.lock_text(result).encode())
    return result


def install(root: Path, cache: Path, *, force: bool = False) -> tuple[Lock, Path, bool]:
    """Exactly the lock, into ``<cache>/galaxy/<key>/``, every hash checked. Returns the lock, the
    folder and whether anything was installed (False: the folder was there and matched)."""
    found = galaxy.read_lock(root)
    if found is None:
        raise ConfigError(f"{root / galaxy.LOCK}: missing", hint="write it first: factory deps lock")
    target = cache / "galaxy" / found.key
    if target.is_dir() and not force:
        check(found, target)
        return found, target, False
    pinned = _pinned(root, found)
    with _staging(cache) as staging:
        requirements = staging / "pinned.yml"
        requirements.write_text(yaml.safe_dump(pinned, sort_keys=False), encoding="utf-8")
        with log.step(f"ansible-galaxy install ({len(found.deps)} locked)"):
            _galaxy_install(root, requirements, staging, pinned, no_deps=True)
        requirements.unlink()
        check(found, staging)
        if force and target.is_dir():
            shutil.rmtree(target)
        _move_into_place(staging, target)
    return found, target, True


def ensure(root: Path, cache: Path) -> Path | None:
    """What a bake calls first: the lock installed (from the cache when it is there); None when the
    checkout has no lock."""
    if galaxy.read_lock(root) is None:
        return None
    return install(root, cache)[1]


def check(found: Lock, folder: Path) -> None:
    """Every dependency of the lock in ``folder`` with the content the lock records (exit 2 if not)."""
    for dep in found.deps:
        path = galaxy.installed_path(folder, dep)
        if not path.is_dir():
            raise ConfigError(
                f"{galaxy.LOCK}: {dep.label}: not installed ({path})", hint="factory deps install --force"
            )
        actual = galaxy.content_sha256(path, dep.kind)
        if actual != dep.sha256:
            raise ConfigError(
                f"{galaxy.LOCK}: {dep.label}: content sha256 {actual} does not match the lock's "
                f"{dep.sha256}",
                hint=f"the source of {dep.name} changed under the same version; review it, then "
                "`factory deps lock` to accept the new content",
            )


class _staging:
    """A temporary folder beside the installed locks (same filesystem: the move is a rename)."""

    def __init__(self, cache: Path) -> None:
        (cache / "galaxy").mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache / "galaxy"))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _move_into_place(staging: Path, target: Path) -> None:
    final = staging.with_name(staging.name + ".done")
    final.mkdir()
    for part in ("roles", "collections"):
        if (staging / part).is_dir():
            (staging / part).rename(final / part)
    if target.is_dir():  # another process installed the same lock meanwhile: same content
        shutil.rmtree(final)
    else:
        final.rename(target)


def _galaxy_install(
    root: Path, requirements: Path, staging: Path, wanted: Mapping[str, list[Any]], *, no_deps: bool = False
) -> None:
    env = {"ANSIBLE_CONFIG": str(root / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    extra = ["--no-deps"] if no_deps else []
    if wanted.get("roles"):
        run(["ansible-galaxy", "role", "install", "-r", requirements, "-p", staging / "roles", *extra],
            cwd=root, env=env)  # fmt: skip
    if wanted.get("collections"):
        # --force: the staging folder is empty, and a collection bundled with the `ansible` package
        # (community.zabbix, installed as `type: dir`) would otherwise count as installed already
        run(["ansible-galaxy", "collection", "install", "-r", requirements, "-p", staging / "collections",
             "--force", *extra], cwd=root, env=env)  # fmt: skip


def _role_source(entry: str | Mapping[str, Any]) -> tuple[str, str, str]:
    """(name, source, type) of a roles: entry, named as ansible-galaxy names the installed role."""
    if isinstance(entry, str):
        entry = {"src": entry}
    src = str(entry.get("src") or entry.get("name") or "")
    scm = str(entry.get("scm") or "")
    if src.startswith("git+") or scm == "git" or src.endswith(".git"):
        kind = "git"
    elif src.startswith(("http://", "https://")):
        kind = "url"
    elif src.endswith((".tar.gz", ".tgz", ".tar")):
        kind = "file"
    else:
        kind = "galaxy"
    default = src.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git").removesuffix(".tar.gz")
    name = str(entry.get("name") or (src if kind == "galaxy" else default))
    return name, src, kind


def _installed_roles(staging: Path, wanted: list[Any]) -> list[Locked]:
    sources = {name: (src, kind) for name, src, kind in map(_role_source, wanted)}
    found = []
    for path in sorted((staging / "roles").glob("*")):
        info_file = path / "meta" / ".galaxy_install_info"
        info = jsonio.load_yaml(info_file.read_bytes(), source=str(info_file)) if info_file.is_file() else {}
        src, kind = sources.get(path.name, (path.name, "galaxy"))  # a dependency: Galaxy by its name
        found.append(
            Locked(
                kind=ROLE,
                name=path.name,
                version=str((info or {}).get("version") or "unversioned"),
                source=src,
                type=kind,
                sha256=galaxy.content_sha256(path, ROLE),
            )
        )
    return found


def _collection_source(fqcn: str, version: str, wanted: list[Any]) -> tuple[str, str]:
    """(source, type) of an installed collection: the requirements entry that names it."""
    for item in wanted:
        entry = {"name": item} if isinstance(item, str) else item
        name, kind = str(entry.get("name", "")), str(entry.get("type") or "galaxy")
        if kind == "galaxy" and name == fqcn:
            return name, kind
        stem = fqcn.replace(".", "-") + "-"
        if kind in ("file", "url") and name.rsplit("/", 1)[-1].startswith(stem):
            return name, kind
        if kind == "dir" and name.rstrip("/").split("/")[-2:] == fqcn.split("."):
            return name, kind  # an installed collection's folder (one bundled with `ansible`)
    return fqcn, "galaxy"  # a dependency of another collection


def _installed_collections(staging: Path, wanted: list[Any]) -> list[Locked]:
    found = []
    for path in sorted((staging / "collections" / "ansible_collections").glob("*/*")):
        manifest = path / "MANIFEST.json"
        if not manifest.is_file():
            continue
        info = json.loads(manifest.read_bytes())["collection_info"]
        fqcn, version = f"{info['namespace']}.{info['name']}", str(info["version"])
        src, kind = _collection_source(fqcn, version, wanted)
        found.append(
            Locked(
                kind=COLLECTION,
                name=fqcn,
                version=version,
                source=src,
                type=kind,
                sha256=galaxy.content_sha256(path, COLLECTION),
            )
        )
    return found


def _pinned(root: Path, found: Lock) -> dict[str, list[dict[str, str]]]:
    """A requirements file of exactly the lock: every version fixed, vendored tarballs first."""
    vendor = root / VENDOR
    roles, collections = [], []
    for dep in found.deps:
        if dep.kind == ROLE:
            tarball = vendor / f"{dep.name}-{dep.version}.tar.gz"
            if tarball.is_file():
                roles.append({"src": str(tarball), "name": dep.name})
                continue
            entry = {"src": dep.source, "name": dep.name}
            if dep.version != "unversioned":
                entry["version"] = dep.version
            if dep.type == "git" and not dep.source.startswith("git+"):
                entry["scm"] = "git"
            roles.append(entry)
            continue
        tarball = vendor / f"{dep.name.replace('.', '-')}-{dep.version}.tar.gz"
        if tarball.is_file():
            collections.append({"name": str(tarball), "type": "file"})
        elif dep.type in ("file", "dir"):
            path = root / dep.source
            collections.append({"name": str(path if path.exists() else dep.source), "type": dep.type})
        elif dep.type == "galaxy":
            collections.append({"name": dep.name, "version": f"=={dep.version}"})
        else:
            collections.append({"name": dep.source, "type": dep.type, "version": dep.version})
    return {"roles": roles, "collections": collections}
