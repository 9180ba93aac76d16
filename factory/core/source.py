"""Tagging: where an artifact came from (the git commit) and what it is called (its version)."""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from factory.core import names
from factory.core.errors import DirtyTree, ExternalToolError
from factory.core.run import run

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHORT = 12


@dataclass(frozen=True, kw_only=True)
class SourceState:
    commit: str  # the full 40-hex commit
    dirty: bool
    source: str  # where the definitions live (remote URL, or the checkout path)

    @property
    def short(self) -> str:
        return self.commit[:SHORT]


def source_state(root: Path) -> SourceState:
    """The commit the tree is at and whether it has uncommitted changes."""
    head = run(["git", "rev-parse", "--verify", "HEAD"], cwd=root, capture=True, ok_codes=(0, 128))
    commit = head.stdout.strip()
    if head.returncode != 0 or not COMMIT_RE.fullmatch(commit):
        raise ExternalToolError(
            f"{root}: not a git checkout with at least one commit",
            hint="images are built from versioned source: git init && git commit first",
        )
    status = run(["git", "status", "--porcelain", "--untracked-files=normal"], cwd=root, capture=True)
    remote = run(["git", "remote", "get-url", "origin"], cwd=root, capture=True, ok_codes=(0, 2, 128))
    source = remote.stdout.strip() if remote.returncode == 0 and remote.stdout.strip() else str(root)
    return SourceState(commit=commit, dirty=bool(status.stdout.strip()), source=source)


def require_clean(state: SourceState, root: Path, *, why: str, alternative: str = "") -> SourceState:
    """``state`` if the tree is clean; else refuse (exit 2): whatever publishes needs a clean tree,
    so that the commit in every tag is the whole truth."""
    if state.dirty:
        raise DirtyTree(
            f"{root}: the tree has uncommitted changes; {why}",
            hint="commit or stash first" + (f", or {alternative}" if alternative else ""),
        )
    return state


def actor(root: Path) -> str:
    """Who acts on the catalog: git's user.name <user.email>, else the login name."""
    found = run(  # one git for both: every catalog change asks
        ["git", "config", "--get-regexp", r"^user\.(name|email)$"], cwd=root, capture=True, ok_codes=(0, 1)
    ).stdout
    values = dict(line.partition(" ")[::2] for line in found.splitlines())
    name, email = values.get("user.name", "").strip(), values.get("user.email", "").strip()
    if name:
        return f"{name} <{email}>" if email else name
    return getpass.getuser()


def new_version(state: SourceState, now: datetime | None = None) -> str:
    """A sortable version id that carries the short commit: ``20261129.084512-0123456789ab``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d.%H%M%S")
    return f"{stamp}-{state.short}" + ("-dirty" if state.dirty else "")


def check_version(version: str) -> str:
    """``version`` if it is shaped like a factory version id (factory.core.names), else ConfigError."""
    return names.check_version(version)


def image_ref(image: str, version: str) -> str:
    return f"localhost/{image}:{version}"


def rejected_ref(image: str, version: str) -> str:
    return f"localhost/{image}:{version}-rejected"


def tag_artifact(artifact_id: str, ref: str) -> None:
    run(["podman", "tag", artifact_id, ref], capture=True)
