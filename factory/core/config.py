"""Configuration: the repository layout and image definitions, parsed once into frozen dataclasses.

Image definitions (``images/<name>/image.toml``) are data only. They are checked against
``schemas/image.schema.json``, their role variables against each role's
``meta/argument_specs.yml``, and their parents against the other definitions, so that a bad
definition fails here, naming the file and the field, before any tool runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from factory.core import aws_config, jsonio, registry_config
from factory.core.aws_config import AwsSettings
from factory.core.errors import ConfigError
from factory.core.galaxy import Finder
from factory.core.registry_config import Registry
from factory.core.roles import RoleRef, check_roles
from factory.core.schemas import check_schema

# The Ansible connection of container builds, relative to the checkout (plugins/connection/runc.py).
CONNECTION_PLUGIN = Path("plugins/connection/runc.py")
# The network of every container the factory starts (build, gate, scan): user-mode (slirp4netns),
# not podman's bridge, where a container's connections stall while others start or stop beside it
# (netavark rewrites the firewall). Measured here beside a loop of container starts: apt-get update
# hung past 100 s in 3 of 24 tries on the bridge (apt's own timeouts never fired), 0 of 24 on
# slirp4netns. Parallel bakes (rebuild -j 2) are such neighbours. It also keeps the host's loopback
# services out of the containers' reach.
CONTAINER_NETWORK = "--network=slirp4netns"


class Target(StrEnum):
    DOCKER = "docker"
    AWS = "aws"


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where everything lives. Generated output stays in gitignored folders."""

    root: Path
    # The one place the catalog lives: a directory, or s3://BUCKET/PREFIX (factory.catalog.storage).
    catalog_location: str
    cache: Path
    # A local AWS API (moto) for emulated runs; None means real AWS. Loopback only (factory.core.awsapi).
    aws_endpoint: str | None = None
    # --registry or $FACTORY_REGISTRY, unchecked (registry_of checks it, and falls back to factory.toml).
    registry: str | None = None

    @classmethod
    def discover(
        cls,
        root: Path,
        *,
        catalog: str | None = None,
        cache: str | None = None,
        aws_endpoint: str | None = None,
        registry: str | None = None,
    ) -> Layout:
        root = root.resolve()
        catalog = catalog or os.environ.get("FACTORY_CATALOG") or str(root / ".factory" / "catalog")
        cache = cache or os.environ.get("FACTORY_CACHE") or str(root / ".cache")
        return cls(
            root=root,
            catalog_location=catalog if catalog.startswith("s3://") else str(Path(catalog).resolve()),
            cache=Path(cache).resolve(),
            aws_endpoint=aws_endpoint or os.environ.get("FACTORY_AWS_ENDPOINT_URL") or None,
            registry=registry or os.environ.get("FACTORY_REGISTRY") or None,
        )

    @property
    def catalog(self) -> Path:
        """The catalog's directory, for a local catalog (an S3 one has none: ConfigError)."""
        if self.catalog_location.startswith("s3://"):
            raise ConfigError(f"--catalog: {self.catalog_location} is not a local directory")
        return Path(self.catalog_location)

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def roles(self) -> Path:
        return self.root / "roles"

    @property
    def finder(self) -> Finder:
        """The roles image definitions name: roles/, then the installed requirements.lock."""
        return Finder(root=self.root, cache=self.cache)

    @property
    def image_tests(self) -> Path:
        return self.root / "gates"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory"

    @property
    def connection_plugin(self) -> Path:
        """How Ansible reaches a container build: runc exec (the template's ``--connection runc``)."""
        return self.root / CONNECTION_PLUGIN

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def keys(self) -> Path:
        """Trusted public keys: keys/*.pub (committed) and keys/local/*.pub (this machine's)."""
        return self.root / "keys"

    @property
    def settings(self) -> Path:
        return self.root / "factory.toml"


CATALOG_EXPIRY_DAYS = 7


@dataclass(frozen=True, kw_only=True)
class Settings:
    """factory.toml: what is the same for every image."""

    channels: tuple[str, ...]
    # Alertmanager severity -> revoke | suspect | ignore (factory signal)
    signal_actions: Mapping[str, str] = field(default_factory=dict)
    # SSM parameters /<prefix>/<image>/<channel> that the aws target keeps pointing at the AMIs
    aws_ssm_prefix: str = "/golden-images"
    # Days a signed catalog snapshot stays valid ([catalog] expiry_days; factory.catalog.freshness)
    catalog_expiry_days: int = CATALOG_EXPIRY_DAYS
    # Advisory feed files imported on use ([advisories] directory; factory.catalog.advisories.sync)
    advisories_directory: str | None = None
    # [registry] url: where images are pushed (factory.core.registry_config); None: nowhere
    registry_url: str | None = None


def load_settings(layout: Layout) -> Settings:
    path = layout.settings
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: missing", hint="the checkout's factory.toml sets the channel order"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    data = jsonio.load_toml(raw, source=str(path))
    check_schema(data, "settings.schema.json", source=path, what="factory settings")
    return Settings(
        channels=tuple(data["channels"]["order"]),
        signal_actions=dict(data.get("signals", {}).get("severity", {})),
        aws_ssm_prefix=data.get("aws", {}).get("ssm_prefix", "/golden-images"),
        catalog_expiry_days=data.get("catalog", {}).get("expiry_days", CATALOG_EXPIRY_DAYS),
        advisories_directory=data.get("advisories", {}).get("directory"),
        registry_url=data.get("registry", {}).get("url"),
    )


def registry_of(layout: Layout) -> Registry | None:
    """The registry images are pushed to: ``--registry``, else ``$FACTORY_REGISTRY`` (both in
    ``layout.registry``), else ``[registry] url`` of factory.toml; None when none is configured."""
    if layout.registry is not None:
        return registry_config.parse(layout.registry, source="--registry / FACTORY_REGISTRY")
    url = load_settings(layout).registry_url
    if url is None:
        return None
    return registry_config.parse(url, source=f"{layout.settings}: registry.url")


@dataclass(frozen=True, kw_only=True)
class Bootstrap:
    suite: str
    variant: str = "minbase"
    include: tuple[str, ...] = ("python3",)


@dataclass(frozen=True, kw_only=True)
class ContainerSettings:
    cmd: tuple[str, ...] = ("/bin/bash",)
    verify_cmd: tuple[str, ...] | None = None
    expose: tuple[int, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def verification_cmd(self) -> tuple[str, ...]:
        return self.verify_cmd or self.cmd


@dataclass(frozen=True, kw_only=True)
class ImageSpec:
    name: str
    path: Path
    description: str
    parent_image: str | None
    bootstrap: Bootstrap | None
    roles: tuple[RoleRef, ...]
    targets: tuple[Target, ...]
    container: ContainerSettings
    tests: tuple[str, ...]
    # (channel, "any" | "security"), in channel order: where a passing rebuild goes by itself
    auto_promote: tuple[tuple[str, str], ...] = ()
    aws: AwsSettings | None = None

    @property
    def definition(self) -> Path:
        return self.path / "image.toml"

    def aws_settings(self) -> AwsSettings:
        """The [aws] table of an image that has the aws target; refused (exit 2) otherwise."""
        if self.aws is None:
            raise ConfigError(
                f"{self.definition}: aws: the aws target needs an [aws] table",
                hint="add [aws] with region, regions, instance_type, ssh_username and volume_size_gb",
            )
        if Target.AWS not in self.targets:
            raise ConfigError(
                f"{self.definition}: targets: {self.name} has no aws target", hint='add "aws" to targets'
            )
        return self.aws


IMAGE_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")
RESERVED_NAMES = frozenset({"refresh", "migrate", "sweep"})


def image_names(layout: Layout) -> list[str]:
    if not layout.images.is_dir():
        raise ConfigError(f"{layout.images}: no images directory", hint="run from the factory checkout")
    names = sorted(p.parent.name for p in layout.images.glob("*/image.toml"))
    for name in names:
        if name in RESERVED_NAMES:
            raise ConfigError(
                f"{layout.images / name}: {name!r} is reserved (`factory catalog {name}` is a command)",
                hint="rename the image directory",
            )
        if not IMAGE_NAME_RE.fullmatch(name):
            raise ConfigError(
                f"{layout.images / name}: image name {name!r} is not a valid image name",
                hint="image directories are named like podman repositories: lower case, digits and '-'",
            )
    return names


def require_image(layout: Layout, name: str) -> None:
    """``name`` is a defined image (cheap: no definition is parsed)."""
    names = image_names(layout)
    if name not in names:
        raise ConfigError(
            f"unknown image {name!r} (no {layout.images / name / 'image.toml'})",
            hint=f"defined images: {', '.join(names) or '(none)'}",
        )


def load_images(layout: Layout) -> dict[str, ImageSpec]:
    """Every image definition, checked as a whole: schema, roles, parents, no cycles."""
    specs = {name: _load_one(layout, name) for name in image_names(layout)}
    for spec in specs.values():
        if spec.parent_image is not None and spec.parent_image not in specs:
            raise ConfigError(
                f"{spec.definition}: parent.image: unknown image {spec.parent_image!r}",
                hint=f"defined images: {', '.join(sorted(specs))}",
            )
    for name in specs:
        _check_no_cycle(specs, name)
    return specs


def load_image(layout: Layout, name: str) -> ImageSpec:
    specs = load_images(layout)
    if name not in specs:
        raise ConfigError(
            f"unknown image {name!r}: there is no {layout.images / name / 'image.toml'}",
            hint=f"defined images: {', '.join(sorted(specs)) or '(none)'}",
        )
    return specs[name]


def build_order(specs: Mapping[str, ImageSpec]) -> list[str]:
    """Image names with every parent before its children (alphabetical among equals)."""
    ordered: list[str] = []
    for name in sorted(specs):
        for ancestor in reversed(lineage(specs, name)):
            if ancestor not in ordered:
                ordered.append(ancestor)
    return ordered


def lineage(specs: Mapping[str, ImageSpec], name: str) -> list[str]:
    """``name`` and its ancestors, nearest first."""
    chain = [name]
    while (parent := specs[chain[-1]].parent_image) is not None:
        chain.append(parent)
    return chain


def _check_no_cycle(specs: Mapping[str, ImageSpec], name: str) -> None:
    seen = [name]
    current = specs[name].parent_image
    while current is not None:
        if current in seen:
            cycle = " -> ".join([*seen[seen.index(current) :], current])
            raise ConfigError(
                f"{specs[name].definition}: parent.image: images form a cycle: {cycle}",
                hint="every chain of parents must end in a bootstrapped image",
            )
        seen.append(current)
        current = specs[current].parent_image


def _load_one(layout: Layout, name: str) -> ImageSpec:
    path = layout.images / name / "image.toml"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    data = jsonio.load_toml(raw, source=str(path))
    check_schema(data, "image.schema.json", source=path, what="image definition")

    roles = tuple(
        RoleRef(name=r["name"], vars=r.get("vars", {}), vars_unchecked=r.get("vars_unchecked", False))
        for r in data["roles"]
    )
    roles = check_roles(layout.finder, path, roles)
    tests = tuple(data.get("tests", [f"test_{name.replace('-', '_')}.py"]))
    for index, test in enumerate(tests):
        if not (layout.image_tests / test).is_file():
            raise ConfigError(
                f"{path}: tests.{index}: {layout.image_tests / test} does not exist",
                hint="Testinfra files live in gates/",
            )

    parent = data["parent"]
    boot = parent.get("bootstrap")
    container = data.get("container", {})
    targets = tuple(Target(t) for t in data.get("targets", ["docker"]))
    return ImageSpec(
        name=name,
        path=path.parent,
        description=data["description"],
        parent_image=parent.get("image"),
        bootstrap=None
        if boot is None
        else Bootstrap(
            suite=boot["suite"],
            variant=boot.get("variant", "minbase"),
            include=tuple(boot.get("include", ["python3"])),
        ),
        roles=roles,
        targets=targets,
        container=ContainerSettings(
            cmd=tuple(container.get("cmd", ["/bin/bash"])),
            verify_cmd=tuple(container["verify_cmd"]) if "verify_cmd" in container else None,
            expose=tuple(container.get("expose", [])),
            env=dict(container.get("env", {})),
        ),
        tests=tests,
        auto_promote=_auto_promote(layout, path, data.get("policy", {}).get("auto_promote", {})),
        aws=aws_config.parse(path, data, required=Target.AWS in targets),
    )


def _auto_promote(layout: Layout, path: Path, policy: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The policy in channel order; the last channel (prod) always needs an explicit promote."""
    if not policy:
        return ()
    order = load_settings(layout).channels
    for channel, when in policy.items():
        where = f"{path}: policy.auto_promote.{channel}"
        if channel not in order:
            raise ConfigError(f"{where}: unknown channel", hint=f"channels: {', '.join(order)}")
        index = order.index(channel)
        if index == len(order) - 1:
            raise ConfigError(
                f"{where}: {channel!r} is the last channel; it always needs an explicit promote",
                hint=f"factory promote IMAGE VERSION --to {channel}",
            )
        before = order[index - 1] if index else None
        if before is not None and policy.get(before) not in ("any", when):
            raise ConfigError(
                f"{where}: {when!r} rebuilds cannot reach {channel!r} without passing {before!r}",
                hint=f'add {before} = "{when}" (or "any") to [policy.auto_promote]',
            )
    return tuple((channel, policy[channel]) for channel in order if channel in policy)
