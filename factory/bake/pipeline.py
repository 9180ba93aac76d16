"""The bake, as a table of contents: render → validate → build → verify → tag → publish."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factory import __version__
from factory.bake import bootstrap, deps, idempotence, verify
from factory.bake import packer as build
from factory.bake.inputs import HashCache, fingerprint, input_hashes, parent_identity
from factory.bake.record import catalog_entry, version_manifest, with_fixed_cves
from factory.bake.render import AwsBuild, BuildContext, ParentRef, Rendered, render, structural_sha256
from factory.catalog import audit, hooks, model, publishing, state, targets, trust
from factory.catalog.docs_types import EntryDoc, IndexDoc
from factory.catalog.store import LATEST, Catalog, catalog_of
from factory.core import log
from factory.core import source as tag
from factory.core.config import ImageSpec, Layout, Target, load_image
from factory.core.errors import ConfigError, ExternalToolError, VerificationFailed
from factory.core.registry_config import is_loopback
from factory.core.run import run


@dataclass(frozen=True, kw_only=True)
class BakeResult:
    image: str
    version: str
    ref: str
    artifact_id: str
    published: bool
    entry: EntryDoc | None
    unchanged_from: str | None = None  # the published version this build turned out identical to
    verified: verify.Verified | None = None  # what the Testinfra gate found (None: not built here)

    def as_json(self) -> dict[str, Any]:
        status = "published" if self.published else "unchanged" if self.unchanged_from else "built"
        return {
            "image": self.image,
            "version": self.version,
            "ref": self.ref,
            "artifact_id": self.artifact_id,
            "status": status,
            "unchanged_from": self.unchanged_from,
        }


def bake(layout: Layout, name: str, *, publish: bool = True, if_changed: bool = False) -> BakeResult:
    """Build, verify, tag and publish one image.

    With ``if_changed``, a build whose packages and input fingerprint equal the newest published
    version's is not published: the run is recorded as ``unchanged`` and the artifact removed.
    """
    deps.ensure(layout.root, layout.cache)  # the locked roles and collections, from the cache if there
    spec = load_image(layout, name)
    catalog = catalog_of(layout)
    doc = audit.trusted(catalog)  # a broken or tampered catalog fails before the build, not after
    if publish:
        targets.require_target(catalog, doc, targets.PODMAN_IMAGE)
        hooks.check(layout, catalog, targets.artifacts_of(doc))  # a registry URL refused now, not after
    signer = catalog.check_signer(trust.load_signer()) if publish else None
    source = tag.source_state(layout.root)
    if publish:
        tag.require_clean(
            source, layout.root, why="a dirty build is never published",
            alternative="pass --no-publish to build for local iteration",
        )  # fmt: skip
    tools = tool_versions()
    parent = resolve_parent(spec, layout, catalog, doc, build_missing=True)
    ctx = new_context(spec, source, parent)
    inputs, fingerprint_sha256 = record_inputs(spec, layout, parent)  # before the build reads them
    with log.step(f"Rendering {spec.name} {ctx.version}"):
        rendered = render(ctx, layout)
    with log.step("packer validate"):
        build.validate(rendered)
    with log.step(f"packer build ({spec.name} FROM {parent.ref})"):
        artifact = build.build(rendered)
    replayed = idempotent(spec, rendered, artifact.id, ctx)
    with log.step(f"Testinfra gate ({', '.join(spec.tests)})"):
        verified = gate(spec, layout, artifact.id, rendered, ctx)
    ref = tag.image_ref(spec.name, ctx.version)
    with log.step(f"Tagging {ref}"):
        tag.tag_artifact(artifact.id, ref)
    built = BakeResult(
        image=spec.name,
        version=ctx.version,
        ref=ref,
        artifact_id=artifact.id,
        published=False,
        entry=None,
        verified=verified,
    )
    if publish and if_changed:
        same = identical_version(catalog, spec.name, fingerprint_sha256, verified.packages)
        if same is not None:
            assert signer is not None
            with log.step(f"Nothing changed since {spec.name} {same}: recording the run, not publishing"):
                publishing.record_unchanged(
                    catalog,
                    spec.name,
                    same,
                    built=ctx.version,
                    fingerprint=fingerprint_sha256,
                    signer=signer,
                    actor=tag.actor(layout.root),
                )
                run(["podman", "rmi", ref])
            return replace(built, unchanged_from=same)
    if not publish:
        log.note(f"built {ref} ({artifact.id}); not published (--no-publish)")
        return built
    # A configured registry gets the image before the catalog does: a failed push records nothing.
    pushed = hooks.push(layout, spec.name, ctx.version, ref)
    with log.step(f"Publishing {spec.name} {ctx.version} to {layout.catalog_location}"):
        assert signer is not None
        entry = publishing.publish(
            catalog,
            catalog_entry(
                ctx,
                rendered=rendered,
                artifact=model.PodmanImage(id=artifact.id, ref=ref)
                if pushed is None
                else model.PodmanImage(id=artifact.id, ref=pushed.ref, digest=pushed.digest),
                verified=verified,
                tools=tools,
                input_fingerprint=fingerprint_sha256,
            ),
            with_fixed_cves(version_manifest(ctx, inputs, verified), doc),
            verified.report.junit,
            signer=signer,
            actor=tag.actor(layout.root),
            idempotence=replayed,
        )
    if pushed is not None:  # the registry follows: evidence attached, `latest` tag moved
        change = hooks.Change(layout=layout, catalog=catalog, images=(spec.name,), signer=signer)
        for line in hooks.follow(change):
            log.note(line)
    return replace(built, published=True, entry=entry)


def identical_version(
    catalog: Catalog, image: str, input_fingerprint: str, packages: Sequence[tuple[str, str]]
) -> str | None:
    """The newest published version with this fingerprint and exactly these packages, if any."""
    doc = audit.trusted(catalog)  # read again: a bake takes minutes and others may have published
    newest = state.current(doc, image, LATEST)
    if newest is None:
        return None
    entry = catalog.find(image, newest, doc)
    if entry.get("fingerprint") != input_fingerprint:
        return None
    recorded = {(p["name"], p["version"]) for p in catalog.manifest(entry)["packages"]}
    return newest if recorded == set(packages) else None


def render_only(
    layout: Layout, name: str, *, target: Target = Target.DOCKER, source_ami: str | None = None
) -> tuple[BuildContext, Rendered]:
    """Render and ``packer validate`` without building; an unpublished parent gets a placeholder."""
    deps.ensure(layout.root, layout.cache)
    spec = load_image(layout, name)
    source = tag.source_state(layout.root)
    if target is Target.AWS:
        spec.aws_settings()  # refuses an image without the aws target
        parent = ParentRef(ref=f"ami:{source_ami or 'filter'}", artifact_id=source_ami or "", record={})
        ctx = replace(
            new_context(spec, source, parent),
            target=target,
            aws=AwsBuild(source_ami=source_ami, endpoint_url=layout.aws_endpoint),
        )
    else:
        catalog = catalog_of(layout)
        parent = resolve_parent(spec, layout, catalog, audit.trusted(catalog), build_missing=False)
        ctx = new_context(spec, source, parent)
    with log.step(f"Rendering {spec.name} ({target.value})"):
        rendered = render(ctx, layout)
    with log.step("packer validate"):
        build.validate(rendered)
    return ctx, rendered


def reverify(layout: Layout, name: str, version: str | None) -> verify.TestReport:
    """Run the Testinfra suite again against a published version; the catalog is not changed."""
    spec = load_image(layout, name)
    catalog = catalog_of(layout)
    doc = audit.trusted(catalog)
    if version is None:
        version = state.current(doc, name, LATEST)
    entry = catalog.find(name, tag.check_version(version), doc) if version else None
    if entry is None:
        raise ConfigError(
            f"{catalog.where}: images: no published versions of {name!r}",
            hint=f"bake it first: factory bake {name}",
        )
    if entry["artifact"]["type"] != "podman-image":
        raise ConfigError(
            f"{catalog.where}: images.{name}.{entry['version']}: an AMI cannot be verified again here",
            hint="its gate ran in the build (or, emulated, in its podman stand-in: artifact.standin_id)",
        )
    junit = layout.build / name / entry["version"] / f"reverify-{datetime.now(UTC):%Y%m%dT%H%M%S}.xml"
    with log.step(f"Testinfra against {entry['artifact']['ref']}"):
        verified = verify.verify(
            spec, layout, entry["artifact"]["id"], junit, version=entry["version"], commit=entry["commit"]
        )
    return verified.report


def record_inputs(spec: ImageSpec, layout: Layout, parent: ParentRef) -> tuple[dict[str, str], str]:
    """Every input file's hash, and the fingerprint over them, the template and the parent."""
    cache = HashCache(layout.cache / "file-hashes.json")
    inputs = input_hashes(spec, layout, cache)
    cache.save()
    identity = parent_identity(parent.record)
    return inputs, fingerprint(spec, inputs, parent=identity, template_sha256=structural_sha256(spec))


def new_context(spec: ImageSpec, source: tag.SourceState, parent: ParentRef) -> BuildContext:
    now = datetime.now(UTC)
    return BuildContext(
        image=spec,
        version=tag.new_version(source, now),
        commit=source.commit,
        created=now.isoformat(timespec="seconds"),
        source=source.source,
        parent=parent,
    )


def resolve_parent(
    spec: ImageSpec, layout: Layout, catalog: Catalog, doc: IndexDoc, *, build_missing: bool
) -> ParentRef:
    if spec.bootstrap is not None:
        base = (
            bootstrap.ensure_base(spec.bootstrap, layout.cache)
            if build_missing
            else bootstrap.existing_base(spec.bootstrap)
        )
        if base is None:
            log.note(
                f"(the {spec.bootstrap.suite} base is not bootstrapped yet; validating with a placeholder)"
            )
            return ParentRef(
                ref="localhost/factory-bootstrap:unbuilt",
                artifact_id="localhost/factory-bootstrap:unbuilt",
                record={},
            )
        return ParentRef(ref=base.ref, artifact_id=base.image_id, record=base.as_record())
    assert spec.parent_image is not None
    # FROM the parent's `latest`: its newest version that is not revoked, obsolete or collected.
    newest_version = state.current(doc, spec.parent_image, LATEST)
    newest = catalog.find(spec.parent_image, newest_version, doc) if newest_version else None
    if newest is not None:
        catalog.verify_entry(newest)
    if newest is None:
        if not build_missing:
            log.note(f"({spec.parent_image} has no published version yet; validating with a placeholder)")
            ref = f"localhost/{spec.parent_image}:unpublished"
            return ParentRef(ref=ref, artifact_id=ref, record={})
        raise ConfigError(
            f"{spec.definition}: parent.image: {spec.parent_image!r} has no published version "
            f"in {catalog.where}",
            hint=f"bake the parent first: factory bake {spec.parent_image}",
        )
    artifact_id, ref = newest["artifact"]["id"], newest["artifact"]["ref"]
    if newest["artifact"]["type"] == "ami":
        # An emulated AMI catalog: the child's stand-in is built FROM the parent's stand-in
        # (factory.aws.bake); a real AMI has no local image to build FROM.
        if "standin_id" not in newest["artifact"]:
            raise ConfigError(
                f"{catalog.where}: images.{spec.parent_image}.{newest['version']}: a real AMI has no "
                "podman stand-in to build FROM",
                hint="bake the child for the aws target (its source AMI is the parent's AMI)",
            )
        artifact_id = ref = newest["artifact"]["standin_id"]
    digest = newest["artifact"].get("digest")  # pushed to a registry: pulled by digest, never by tag
    if run(["podman", "image", "exists", artifact_id], ok_codes=(0, 1)).returncode != 0:
        if digest is None:
            raise ExternalToolError(
                f"the artifact of {spec.parent_image} {newest['version']} ({artifact_id}) "
                "is not in local podman storage",
                hint=f"the catalog records it but this machine lacks it: factory bake {spec.parent_image}",
            )
        with log.step(f"Pulling {ref}"):
            host = ref.split("/", 1)[0].rsplit(":", 1)[0]
            run(
                [
                    "podman",
                    "pull",
                    "--quiet",
                    f"--tls-verify={'false' if is_loopback(host) else 'true'}",
                    ref,
                ]
            )
    record = {"image": spec.parent_image, "version": newest["version"], "artifact_id": artifact_id}
    return ParentRef(
        ref=ref, artifact_id=artifact_id, record=record | ({"digest": digest} if digest else {})
    )


def gate(
    spec: ImageSpec, layout: Layout, artifact_id: str, rendered: Rendered, ctx: BuildContext
) -> verify.Verified:
    """Verification; a rejected artifact is tagged ``…-rejected`` so it never looks like a good one."""
    try:
        return verify.verify(
            spec,
            layout,
            artifact_id,
            rendered.build_dir / "junit.xml",
            version=ctx.version,
            commit=ctx.commit,
        )
    except VerificationFailed:
        tag.tag_artifact(artifact_id, tag.rejected_ref(spec.name, ctx.version))
        raise


def idempotent(spec: ImageSpec, rendered: Rendered, artifact_id: str, ctx: BuildContext) -> Path | None:
    """The idempotence report of a build that ran its playbook twice (external roles), or None; a
    role of roles/ that changed something again rejects the artifact as the gate would."""
    if not rendered.change_reports:
        return None
    out = rendered.build_dir / idempotence.FILE
    with log.step("Idempotence report (the playbook applied twice)"):
        try:
            doc = idempotence.collect(spec, ctx.version, rendered.change_reports, out)
        except VerificationFailed:
            tag.tag_artifact(artifact_id, tag.rejected_ref(spec.name, ctx.version))
            raise
    for line in idempotence.summary(doc):
        log.note(f"not idempotent (reported, not failed): {line}")
    return out


def tool_versions() -> dict[str, str]:
    ansible = run(["ansible-playbook", "--version"], capture=True).stdout
    match = re.search(r"core ([0-9][^\]\s]*)", ansible)
    return {
        "packer": build.version(),
        "ansible": match.group(1) if match else ansible.splitlines()[0],
        "factory": __version__,
    }
