"""Rendering: an image definition becomes a Packer template, a playbook and its variables.

Everything lands in ``build/<image>/<version>/`` (gitignored). Jinja2 runs with StrictUndefined,
so a name the template needs but the context lacks fails here, not inside Packer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from factory.config import ImageSpec, Layout, Target
from factory.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ParentRef:
    """What the build starts FROM: a bootstrapped base or a published image of the catalog."""

    ref: str
    artifact_id: str
    record: Mapping[str, Any]  # what the catalog keeps as this version's parent


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    image: ImageSpec
    version: str
    commit: str
    created: str
    source: str
    parent: ParentRef
    target: Target = Target.DOCKER


@dataclass(frozen=True, kw_only=True)
class Rendered:
    build_dir: Path
    template: Path
    template_sha256: str
    playbook: Path
    vars_file: Path
    packer_manifest: Path


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


def render_template(ctx: BuildContext, build_dir: Path, ansible_cfg: Path) -> str:
    """The Packer template as text. Raises ``ConfigError`` for an undefined name."""
    name = f"{ctx.target.value}.json.j2"
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
        **STRUCTURAL,
    )
    text = render_template(ctx, Path("/build"), Path("/ansible.cfg"))
    return hashlib.sha256(text.encode()).hexdigest()


def playbook(ctx: BuildContext) -> list[dict[str, Any]]:
    return [
        {
            "name": f"Provision {ctx.image.name} {ctx.version}",
            "hosts": "all",
            "gather_facts": True,
            "roles": [{"role": role.name} for role in ctx.image.roles],
        }
    ]


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
    return merged


def render(ctx: BuildContext, layout: Layout) -> Rendered:
    """Write the template, playbook, vars and inventory for one build; return where they are."""
    build_dir = layout.build / ctx.image.name / ctx.version
    text = render_template(ctx, build_dir, layout.root / "ansible.cfg")  # fails before anything is written
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
    )


def _context_record(ctx: BuildContext) -> dict[str, Any]:
    record = asdict(ctx)
    record["image"] = {"name": ctx.image.name, "definition": str(ctx.image.definition)}
    return record
