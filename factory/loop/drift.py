"""Drift: does a live host still match the image version it says it runs?

The host names its version in ``/etc/image-release`` (roles/common). Its installed packages and
the sha256 of its tracked configuration files are compared with what that version's signed
manifest recorded at bake time (factory/bake/verify.py). Hosts are reached through Testinfra's
backends (``podman://``, ``ssh://``, ``ansible://``), the same way the gate reaches containers.
Drift is never repaired in place: the fix is a redeploy from the image.
"""

from __future__ import annotations

import os
import shlex
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import testinfra

from factory.bake.verify import DPKG_QUERY, TRACKED_PATHS, checksum_command, parse_checksums, parse_packages
from factory.catalog import audit, state
from factory.catalog.docs_types import IndexDoc
from factory.catalog.store import LATEST, catalog_of
from factory.core.config import Layout, load_settings
from factory.core.errors import ConfigError, ExternalToolError
from factory.core.run import tool_path

SCHEMES = ("podman", "ssh", "ansible")
RELEASE_FILE = "/etc/image-release"
# find names a path it cannot find this way; anything else on its stderr is a real failure.
_MISSING = "No such file or directory"


@dataclass(frozen=True, kw_only=True)
class Target:
    url: str  # as given: Testinfra reads its query string (?sudo=true, ?ansible_inventory=…)
    scheme: str
    name: str  # container, [user@]host[:port] or inventory group


@dataclass(frozen=True, kw_only=True)
class Observed:
    """What one host says about itself."""

    host: str
    packages: tuple[tuple[str, str], ...]
    files: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class Expected:
    """What the catalog recorded for the version a host runs."""

    image: str
    version: str
    commit: str
    channel: str  # where a redeploy resolves from
    packages: Mapping[str, str]
    files: Mapping[str, str] | None  # None: published before file checksums were recorded


@dataclass(frozen=True, kw_only=True)
class Drift:
    target: str
    host: str
    expected: Expected
    added: Mapping[str, str]
    removed: Mapping[str, str]
    changed: Mapping[str, tuple[str, str]]  # name -> (image, live)
    files_changed: Mapping[str, tuple[str, str]]  # path -> (image sha256, live sha256)
    files_missing: Mapping[str, str]  # path -> image sha256
    files_added: Mapping[str, str]  # path -> live sha256, in a tracked directory

    @property
    def drifted(self) -> bool:
        packages = (self.added, self.removed, self.changed)
        return any((*packages, self.files_changed, self.files_missing, self.files_added))

    @property
    def hint(self) -> str:
        return (
            f"fix: redeploy from the image (factory resolve {self.expected.image} "
            f"--channel {self.expected.channel}), never patch the host"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "host": self.host,
            "image": self.expected.image,
            "version": self.expected.version,
            "commit": self.expected.commit,
            "packages": {
                "added": dict(self.added),
                "removed": dict(self.removed),
                "changed": {n: {"from": old, "to": new} for n, (old, new) in self.changed.items()},
            },
            "files": {
                "changed": {p: {"from": old, "to": new} for p, (old, new) in self.files_changed.items()},
                "missing": dict(self.files_missing),
                "added": dict(self.files_added),
            },
            "files_recorded": self.expected.files is not None,
            "drift": self.drifted,
            "hint": self.hint if self.drifted else None,
        }


def parse_target(url: str) -> Target:
    """``podman://CONTAINER``, ``ssh://[USER@]HOST[:PORT]`` or ``ansible://GROUP``; else ConfigError."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in SCHEMES or "://" not in url:
        raise ConfigError(
            f"--target {url!r}: unknown scheme {parsed.scheme or '(none)'!r}",
            hint="use podman://CONTAINER, ssh://HOST or ansible://INVENTORY_GROUP",
        )
    if not parsed.netloc or parsed.path not in ("", "/"):
        raise ConfigError(
            f"--target {url!r}: no {'inventory group' if parsed.scheme == 'ansible' else 'host'} "
            f"after {parsed.scheme}://",
            hint=f"e.g. --target {parsed.scheme}://{'web' if parsed.scheme == 'ansible' else 'web-1'}",
        )
    return Target(url=url, scheme=parsed.scheme, name=parsed.netloc)


def parse_release(text: str) -> dict[str, str]:
    """The KEY=value lines of /etc/image-release (shell-quoted by roles/common)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 1 and "=" in words[0]:
            key, value = words[0].split("=", 1)
            found[key] = value
    return found


def compare(target: str, observed: Observed, expected: Expected) -> Drift:
    live = dict(observed.packages)
    image = expected.packages
    recorded = expected.files or {}
    files = observed.files if expected.files is not None else {}
    return Drift(
        target=target,
        host=observed.host,
        expected=expected,
        added={n: live[n] for n in sorted(set(live) - set(image))},
        removed={n: image[n] for n in sorted(set(image) - set(live))},
        changed={n: (image[n], live[n]) for n in sorted(set(image) & set(live)) if image[n] != live[n]},
        files_changed={
            p: (recorded[p], files[p]) for p in sorted(set(recorded) & set(files)) if recorded[p] != files[p]
        },
        files_missing={p: recorded[p] for p in sorted(set(recorded) - set(files))},
        files_added={p: files[p] for p in sorted(set(files) - set(recorded))},
    )


# -- the host ------------------------------------------------------------------------------


def connect(target: Target, layout: Layout) -> list[Any]:
    """Testinfra hosts for the target: one, or each host of an inventory group."""
    # Testinfra starts podman, ssh and ansible itself, through a shell: give it the PATH that
    # factory.core.run gives its children (the venv's ansible first, Debian's podman shim before docker).
    os.environ["PATH"] = tool_path()
    options: dict[str, str] = {}
    if target.scheme == "ansible":
        options["ansible_inventory"] = str(layout.inventory / "build.ini")  # unless the URL names one
    try:
        hosts: list[Any] = testinfra.get_hosts([target.url], **options)
    except (RuntimeError, AssertionError, OSError) as exc:
        raise ExternalToolError(f"--target {target.url}: {exc}") from None
    if not hosts:
        raise ConfigError(
            f"--target {target.url}: the inventory group {target.name!r} has no host",
            hint=f"the inventory is {options.get('ansible_inventory')}; another: ?ansible_inventory=PATH",
        )
    return hosts


def host_name(host: Any) -> str:
    return str(getattr(host.backend, "hostname", None) or host.backend)


def read_release(host: Any) -> dict[str, str]:
    """The host's /etc/image-release; ConfigError if it has none, ExternalToolError if unreachable."""
    release = host.run("cat -- %s", RELEASE_FILE)
    if release.rc == 0:
        return parse_release(release.stdout)
    why = _text(release.stderr).strip() or f"exit {release.rc}"
    if _MISSING in why:
        raise ConfigError(
            f"{host_name(host)}: no {RELEASE_FILE}: the host does not say which image it runs",
            hint="only hosts deployed from a factory image can be checked (roles/common writes the file)",
        )
    raise ExternalToolError(
        f"{host_name(host)}: cannot read {RELEASE_FILE}: {why}",
        hint="check that the container runs, or that ssh/ansible reach the host (and may read the file)",
    )


def observe(host: Any, recorded: Iterable[str]) -> Observed:
    """Installed packages, and the checksums of ``TRACKED_PATHS`` and the ``recorded`` files."""
    packages = parse_packages(_run(host, DPKG_QUERY).stdout)
    checked = _run(host, checksum_command({*TRACKED_PATHS, *recorded}), ok=(0, 1))
    problems = [line for line in _text(checked.stderr).splitlines() if _MISSING not in line]
    if checked.rc != 0 and problems:
        raise ExternalToolError(
            f"{host_name(host)}: cannot read tracked files: {'; '.join(problems)}",
            hint="run as root: ssh://root@HOST, or add ?sudo=true to the target",
        )
    return Observed(host=host_name(host), packages=packages, files=parse_checksums(checked.stdout))


def _run(host: Any, argv: Sequence[str], ok: Sequence[int] = (0,)) -> Any:
    """One command on the host (Testinfra quotes each argument)."""
    result = host.run(" ".join(["%s"] * len(argv)), *argv)
    if result.rc not in ok:
        raise ExternalToolError(
            f"{host_name(host)}: `{shlex.join(argv)}` exited {result.rc}: {_text(result.stderr).strip()}",
            hint="is the host a Debian system deployed from a factory image?",
        )
    return result


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


# -- the catalog ---------------------------------------------------------------------------


def expected_for(layout: Layout, host: str, release: Mapping[str, str]) -> Expected:
    """The signed manifest of the version the host names; ConfigError if the catalog lacks it."""
    image, version = release.get("IMAGE"), release.get("VERSION")
    if not image or not version:
        raise ConfigError(
            f"{host}: {RELEASE_FILE} names no IMAGE and VERSION",
            hint="the file is written by roles/common; a host without it was not deployed from an image",
        )
    catalog = catalog_of(layout)
    doc = audit.trusted(catalog)
    entry = state.entry_of(doc, image, version)
    if entry is None:
        raise ConfigError(
            f"{host}: runs {image} {version}, which the catalog {layout.catalog_location} does not have",
            hint=f"`factory catalog {image}` lists the published versions; is --catalog the right one?",
        )
    catalog.verify_entry(entry)
    manifest = catalog.manifest(entry)
    files = manifest.get("files")
    return Expected(
        image=image,
        version=version,
        commit=str(entry["commit"]),
        channel=_channel(doc, load_settings(layout).channels, image, version),
        packages={p["name"]: p["version"] for p in manifest["packages"]},
        files=dict(files) if files is not None else None,
    )


def _channel(doc: IndexDoc, order: Sequence[str], image: str, version: str) -> str:
    """The most stable channel that points to the version now, else that pointed to it, else latest."""
    now = [c for c in order if state.current(doc, image, c) == version]
    held = state.channels_held(doc, image, version)
    before = [c for c in order if c in held]
    return (now or before or [LATEST])[-1]


def check(layout: Layout, target: Target) -> list[Drift]:
    """Every host of the target, compared with the version it says it runs."""
    found: list[Drift] = []
    for host in connect(target, layout):
        expected = expected_for(layout, host_name(host), read_release(host))
        observed = observe(host, expected.files or {})
        found.append(compare(target.url, observed, expected))
    return found


def report_lines(drift: Drift) -> list[str]:
    """The text report of one host: a table of what differs, then the verdict and the fix."""
    exp = drift.expected
    head = f"{drift.host} ({drift.target}): {exp.image} {exp.version} (commit {exp.commit[:12]})"
    rows: list[tuple[str, str, str, str]] = [
        *(("package", n, "-", v) for n, v in drift.added.items()),
        *(("package", n, v, "-") for n, v in drift.removed.items()),
        *(("package", n, old, new) for n, (old, new) in drift.changed.items()),
        *(("file", p, old[:12], new[:12]) for p, (old, new) in drift.files_changed.items()),
        *(("file", p, sha[:12], "missing") for p, sha in drift.files_missing.items()),
        *(("file", p, "-", sha[:12]) for p, sha in drift.files_added.items()),
    ]
    lines = [head]
    if exp.files is None:
        lines.append("  note: this version was published before file checksums were recorded; packages only")
    if not rows:
        return [*lines, f"  no drift: {len(exp.packages)} packages and {len(exp.files or {})} files match"]
    table = [("", "name", "image", "host"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for kind, name, image, live in table:
        lines.append(f"  {kind.ljust(widths[0])}  {name.ljust(widths[1])}  {image.ljust(widths[2])}  {live}")
    lines.append(f"  drift: {len(rows)} difference(s) from the image")
    lines.append(drift.hint)
    return lines
