"""Rendering: an image definition becomes a Packer template, a playbook and its variables.

Everything lands in ``build/<image>/<version>/`` (gitignored). Jinja2 runs with StrictUndefined,
so a name the template needs but the context lacks fails here, not inside Packer.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from factory.bake.verify import tracked_paths
from factory.core.awsapi import check_loopback
from factory.core.config import CONNECTION_PLUGIN, CONTAINER_NETWORK, ImageSpec, Layout, Target
from factory.core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ParentRef:
    """What the build starts FROM: a bootstrapped base or a published image of the catalog."""

    ref: str
    artifact_id: str
    record: Mapping[str, Any]  # what the catalog keeps as this version's parent


AMI_ID_RE = re.compile(r"ami-[0-9a-f]{8,17}")
# What EC2 accepts in an AMI name: 3 to 128 of letters, digits, ( ) [ ] space . / - ' @ _
AMI_NAME_RE = re.compile(r"[A-Za-z0-9()\[\] ./'@_-]{3,128}")


@dataclass(frozen=True, kw_only=True)
class AwsBuild:
    """Per-build facts of an ``aws`` build that the definition cannot know."""

    # The AMI to start from: the parent's AMI (catalog) or the one aws.source.ssm_parameter names.
    # None: the newest AMI that aws.source's owners and name select (source_ami_filter).
    source_ami: str | None = None
    # A loopback EC2 API (moto): an EMULATED build, in which no instance boots and nothing is
    # provisioned or tested. None: the real AWS API.
    endpoint_url: str | None = None

    @property
    def emulated(self) -> bool:
        return self.endpoint_url is not None


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    image: ImageSpec
    version: str
    commit: str
    created: str
    source: str
    parent: ParentRef
    target: Target = Target.DOCKER
    aws: AwsBuild | None = None  # aws target only; None means AwsBuild()


@dataclass(frozen=True, kw_only=True)
class Rendered:
    build_dir: Path
    template: Path
    template_sha256: str
    playbook: Path
    vars_file: Path
    packer_manifest: Path
    gate: Path | None = None  # aws (not emulated): the settings of the Testinfra gate in Packer
    # What each Ansible run changed, per role (one file per run; docker builds with external roles
    # run the playbook twice: factory.bake.idempotence)
    change_reports: tuple[Path, ...] = ()


def _strict_json(value: Any, **kwargs: Any) -> str:
    """``tojson`` that treats an undefined value as the error StrictUndefined means it to be."""

    def default(obj: Any) -> Any:
        if isinstance(obj, jinja2.Undefined):
            obj._fail_with_undefined_error()
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    return json.dumps(value, default=default, **kwargs)


@cache  # one environment per process: Jinja then compiles each template once, not once per image
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("factory", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 -- renders JSON, not HTML; values go through tojson
        keep_trailing_newline=True,
    )
    env.policies["json.dumps_function"] = _strict_json
    return env


def render_template(
    ctx: BuildContext, build_dir: Path, ansible_cfg: Path, galaxy_dir: Path | None = None
) -> str:
    """The Packer template as text. Raises ``ConfigError`` for an undefined name. ``galaxy_dir``:
    the installed requirements.lock, for an image that uses an external role."""
    name = f"{ctx.target.value}.json.j2"
    target_vars = _aws_vars(ctx) if ctx.target is Target.AWS else {}
    try:
        template = _environment().get_template(name)
        text = template.render(
            image=ctx.image,
            version=ctx.version,
            commit=ctx.commit,
            created=ctx.created,
            source=ctx.source,
            parent=ctx.parent,
            build_dir=str(build_dir),
            ansible_cfg=str(ansible_cfg),
            connection_plugins=str(ansible_cfg.parent / CONNECTION_PLUGIN.parent),
            container_network=CONTAINER_NETWORK,
            galaxy_env=_galaxy_env(ansible_cfg, galaxy_dir),
            ansible_runs=[_run_env(ansible_cfg, report) for report in change_reports(build_dir, galaxy_dir)],
            **target_vars,
        )
    except jinja2.UndefinedError as exc:
        raise ConfigError(
            f"factory/templates/{name}: undefined template variable: {exc.message}",
            hint=f"check {ctx.image.definition} and the template for a missing or misspelt name",
        ) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(f"factory/templates/{name}: {exc}") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"factory/templates/{name}: renders invalid JSON: {exc}") from None
    return text


def _galaxy_env(ansible_cfg: Path, galaxy_dir: Path | None) -> list[str]:
    """Where Ansible finds external roles and collections: after roles/, the installed lock."""
    if galaxy_dir is None:
        return []
    return [
        f"ANSIBLE_ROLES_PATH={ansible_cfg.parent / 'roles'}:{galaxy_dir / 'roles'}",
        f"ANSIBLE_COLLECTIONS_PATH={galaxy_dir / 'collections'}",
    ]


CHANGES_CALLBACK = "factory_changes"  # plugins/callback/factory_changes.py


def change_reports(build_dir: Path, galaxy_dir: Path | None) -> list[Path | None]:
    """One entry per Ansible run of a docker build: an image without external roles runs its
    playbook once and reports nothing; one with them runs it twice, each run writing what every
    role changed, so the second run shows how idempotent the roles are."""
    if galaxy_dir is None:
        return [None]
    return [build_dir / "changes-1.json", build_dir / "changes-2.json"]


def _run_env(ansible_cfg: Path, report: Path | None) -> list[str]:
    if report is None:
        return []
    return [
        f"ANSIBLE_CALLBACK_PLUGINS={ansible_cfg.parent / 'plugins' / 'callback'}",
        f"ANSIBLE_CALLBACKS_ENABLED={CHANGES_CALLBACK}",
        f"FACTORY_CHANGES_REPORT={report}",
    ]


def uses_dependencies(image: ImageSpec) -> bool:
    return any(role.dep is not None for role in image.roles)


def ami_tags(ctx: BuildContext) -> dict[str, str]:
    """The tags of the AMI, its snapshots and the build instance: the factory's, then the user's."""
    settings = ctx.image.aws_settings()
    return {
        "Name": f"{ctx.image.name}-{ctx.version}",
        "factory:image": ctx.image.name,
        "factory:version": ctx.version,
        "factory:commit": ctx.commit,
        "factory:source": ctx.source,
        **dict(sorted(settings.tags.items())),
    }


def _aws_vars(ctx: BuildContext) -> dict[str, Any]:
    """What aws.json.j2 needs beyond the common names; refuses what Packer must never see."""
    settings = ctx.image.aws_settings()
    build = ctx.aws or AwsBuild()
    if build.endpoint_url is not None:
        check_loopback(build.endpoint_url)
    if build.source_ami is not None:
        if not AMI_ID_RE.fullmatch(build.source_ami):
            raise ConfigError(f"{build.source_ami!r} is not an AMI id", hint="ami- and 8 or 17 hex digits")
    elif settings.source is None or settings.source.name is None:
        raise ConfigError(
            f"{ctx.image.definition}: aws.source: this build needs an explicit source AMI",
            hint="the parent's AMI comes from the catalog; an SSM parameter is resolved before rendering",
        )
    ami_name = f"{ctx.image.name}-{ctx.version}"
    if not AMI_NAME_RE.fullmatch(ami_name):
        raise ConfigError(f"{ami_name!r} is not a valid AMI name", hint="check the version id")
    return {"aws": settings, "build": build, "emulated": build.emulated, "tags": ami_tags(ctx)}


STRUCTURAL = {
    "version": "00000000.000000-000000000000",
    "commit": "0" * 40,
    "created": "1970-01-01T00:00:00+00:00",
    "source": "",
}


def structural_sha256(image: ImageSpec, target: Target = Target.DOCKER) -> str:
    """The template's hash with every per-build value (version, commit, time, parent id, paths) held
    fixed: it changes only when the template or the definition changes what gets built."""
    ctx = BuildContext(
        image=image,
        parent=ParentRef(ref="parent", artifact_id="parent", record={}),
        target=target,
        aws=_structural_aws(image) if target is Target.AWS else None,
        **STRUCTURAL,
    )
    galaxy = Path("/galaxy") if uses_dependencies(image) else None
    text = render_template(ctx, Path("/build"), Path("/ansible.cfg"), galaxy)
    return hashlib.sha256(text.encode()).hexdigest()


def _structural_aws(image: ImageSpec) -> AwsBuild:
    """A real (not emulated) build; a fixed AMI id wherever the definition does not select one."""
    source = image.aws.source if image.aws is not None else None
    by_filter = source is not None and source.name is not None
    return AwsBuild(source_ami=None if by_filter else "ami-00000000000000000")


def playbook(ctx: BuildContext) -> list[dict[str, Any]]:
    play: dict[str, Any] = {
        "name": f"Provision {ctx.image.name} {ctx.version}",
        "hosts": "all",
        "gather_facts": True,
    }
    if ctx.target is Target.AWS:
        play["become"] = True  # EC2 logs in as aws.ssh_username, not root
    play["roles"] = [{"role": role.name} for role in ctx.image.roles]
    return [play]


def extra_vars(ctx: BuildContext) -> dict[str, Any]:
    """Role variables from the definition plus the factory's own facts about this build."""
    merged: dict[str, Any] = {}
    for role in ctx.image.roles:
        merged.update(role.vars)
    merged.update(
        factory_image=ctx.image.name,
        factory_version=ctx.version,
        factory_commit=ctx.commit,
        factory_created=ctx.created,
        factory_source=ctx.source,
        factory_parent=ctx.parent.ref,
    )
    if ctx.target is Target.AWS and ctx.image.aws is not None:
        # For roles that must treat a VM differently (e.g. the build user's authorized_keys).
        merged.update(factory_target=ctx.target.value, factory_build_user=ctx.image.aws.ssh_username)
    return merged


def gate_settings(ctx: BuildContext, layout: Layout, build_dir: Path) -> dict[str, Any]:
    """What factory.aws.remote_gate runs inside Packer: the same pytest command as ``factory verify``,
    then, once it passed, what verify records from a container (read back by remote_gate.read_evidence).
    The tracked paths are resolved here, so the gate needs no image definitions at run time."""
    return {
        "root": str(layout.root),
        "tests": [str(layout.image_tests / test) for test in ctx.image.tests],
        "junit": str(build_dir / "junit.xml"),
        "image": ctx.image.name,
        "version": ctx.version,
        "commit": ctx.commit,
        "sudo": True,  # the SSH user is aws.ssh_username, not root
        "tracked_paths": list(tracked_paths(ctx.image, layout)),
        "packages_file": str(build_dir / "packages.json"),  # [[name, version], ...]
        "files_file": str(build_dir / "files.json"),  # {path: sha256}
    }


# Packer's ansible provisioner runs one executable; this one hands its arguments to the gate.
GATE_SHIM = """#!{python}
# Written by factory.bake.render: Packer runs this as the `command` of the Testinfra gate.
import sys

from factory.aws.remote_gate import main

sys.exit(main(sys.argv[1:]))
"""


def render(ctx: BuildContext, layout: Layout) -> Rendered:
    """Write the template, playbook, vars and inventory for one build; return where they are."""
    build_dir = layout.build / ctx.image.name / ctx.version
    galaxy_dir = None
    if uses_dependencies(ctx.image):
        lock = layout.finder.lock()
        assert lock is not None  # the definition loaded: its external roles are locked and installed
        galaxy_dir = layout.finder.installed(lock)
    text = render_template(ctx, build_dir, layout.root / "ansible.cfg", galaxy_dir)  # fails before writing
    with_gate = ctx.target is Target.AWS and not (ctx.aws or AwsBuild()).emulated
    settings = gate_settings(ctx, layout, build_dir) if with_gate else None  # may fail too
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    template = build_dir / "packer.json"
    template.write_text(text, encoding="utf-8")
    book = build_dir / "playbook.yml"
    book.write_text("---\n" + yaml.safe_dump(playbook(ctx), sort_keys=False), encoding="utf-8")
    vars_file = build_dir / "vars.json"
    vars_file.write_text(json.dumps(extra_vars(ctx), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    shutil.copytree(layout.inventory, build_dir / "inventory")
    gate = None
    if settings is not None:
        gate = build_dir / "gate.json"
        gate.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        shim = build_dir / "remote-gate"
        shim.write_text(GATE_SHIM.format(python=sys.executable), encoding="utf-8")
        shim.chmod(0o755)
    (build_dir / "context.json").write_text(
        json.dumps(_context_record(ctx), indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    return Rendered(
        build_dir=build_dir,
        template=template,
        template_sha256=hashlib.sha256(text.encode()).hexdigest(),
        playbook=book,
        vars_file=vars_file,
        packer_manifest=build_dir / "packer-manifest.json",
        gate=gate,
        change_reports=tuple(p for p in change_reports(build_dir, galaxy_dir) if p is not None)
        if ctx.target is Target.DOCKER
        else (),
    )


def _context_record(ctx: BuildContext) -> dict[str, Any]:
    record = asdict(ctx)
    record["image"] = {"name": ctx.image.name, "definition": str(ctx.image.definition)}
    return record
