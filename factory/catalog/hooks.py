"""Follow-ups after a catalog change, registered by the targets that mirror the catalog.

The catalog is the source of truth; a target (AWS SSM parameters and AMI deprecation, later a
registry's tags) follows it. The lifecycle verbs, signals and rebuilds describe what changed in a
:class:`Change` and call :func:`follow`; each registered follower decides whether the change
concerns it. Nothing below ``factory.cli`` imports a target: the target registers itself here
(``factory.aws.hooks.register``), which keeps the layers one-way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.core.config import Layout


@dataclass(frozen=True, kw_only=True)
class Change:
    """One committed catalog change, as the followers need it."""

    layout: Layout
    catalog: Catalog
    images: tuple[str, ...] | None  # images whose channels may have moved; None: every image
    retired: tuple[tuple[str, str], ...] = ()  # (image, version) revoked or deprecated
    retired_at: datetime | None = None  # when the retired versions stop being good
    reason: str = ""
    actor: str = ""
    signer: Signer | None = None  # the writer's key, for followers that record what they applied
    doc: Mapping[str, Any] | None = None  # the catalog as just committed, when the caller has it


Follower = Callable[[Change], list[str]]  # returns one line per thing it applied
_FOLLOWERS: dict[str, Follower] = {}


def register(name: str, follower: Follower) -> None:
    """Add (or replace) the follower called ``name``; registering twice is harmless."""
    _FOLLOWERS[name] = follower


def follow(change: Change) -> list[str]:
    """Run every registered follower on ``change``, in registration order; what they applied."""
    return [line for follower in list(_FOLLOWERS.values()) for line in follower(change)]
