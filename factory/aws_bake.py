"""The aws target's bake: the roles and the Testinfra gate, then an AMI through Packer's
amazon-ebs, published to an AMI catalog and distributed.

Against a local AWS API (``--endpoint-url``, moto) no EC2 instance boots, so Packer runs with
``communicator: none`` and cannot provision or test anything. The build is then EMULATED, and says
so in its output and in its catalog entry (``artifact.emulated``). So that no unverified artifact
is ever published, an emulated bake first bakes the same definition in a podman stand-in
(factory.pipeline: the same roles, the same Testinfra suite); the test evidence, package list and
SBOM of the version are the stand-in's, and ``artifact.standin_id`` names it. Against real AWS the
gate runs inside the Packer build against the build instance (factory/templates/aws.json.j2).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from factory import audit, aws, aws_catalog, build, lifecycle, log, pipeline, tag, trust
from factory.catalog import catalog_of
from factory.config import ImageSpec, Layout, Target, load_image
from factory.errors import ConfigError, DirtyTree
from factory.inputs import HashCache, fingerprint, input_hashes, parent_identity
from factory.render import AwsBuild, ParentRef, render, structural_sha256

EMULATED_NOTE = (
    "EMULATED: the AWS API is a local emulator; no EC2 instance boots. The roles and the Testinfra "
    "suite run in a podman stand-in built from the same definition and commit."
)


def bake(layout: Layout, name: str, *, source_ami: str | None = None) -> pipeline.BakeResult:
    spec = load_image(layout, name)
    settings = _aws_settings(spec)
    target = aws.AwsTarget(layout.aws_endpoint)
    if not target.emulated:
        raise ConfigError(
            f"{spec.definition}: a bake against real AWS is not wired to publish yet",
            hint="`factory render --target aws` renders and validates the real template; "
            "bake against a local AWS API with --endpoint-url",
        )
    catalog = catalog_of(layout)
    doc = audit.trusted(catalog)
    aws_catalog.require_target(catalog, doc, aws_catalog.AMI)
    signer = catalog.check_signer(trust.load_signer())
    state = tag.source_state(layout.root)
    if state.dirty:
        raise DirtyTree(
            f"{layout.root}: the tree has uncommitted changes; a dirty build is never published",
            hint="commit or stash first",
        )
    if spec.parent_image is not None:
        raise ConfigError(
            f"{spec.definition}: parent.image: emulated aws bakes start from a source AMI; "
            "layered images on the aws target are not supported yet",
            hint="bake the layered image for the docker target",
        )
    log.warn(EMULATED_NOTE)
    with log.step(f"Stand-in: {spec.name} in podman (roles + Testinfra gate)"):
        standin = pipeline.bake(layout, name, publish=False)
    assert standin.verified is not None
    source = source_ami or _source_from_ssm(spec, target)
    parent = ParentRef(
        ref=f"ami:{source}" if source else "ami:" + _filter_text(spec),
        artifact_id=source or "",
        record={
            "bootstrap": {"source_ami": source or _filter_text(spec), "standin_id": standin.artifact_id}
        },
    )
    ctx = replace(
        pipeline.new_context(spec, state, parent),
        target=Target.AWS,
        aws=AwsBuild(source_ami=source, endpoint_url=target.endpoint_url),
    )
    cache = HashCache(layout.cache / "file-hashes.json")
    inputs = input_hashes(spec, layout, cache)
    cache.save()
    fingerprint_sha256 = fingerprint(
        spec,
        inputs,
        parent=parent_identity(parent.record),
        template_sha256=structural_sha256(spec, Target.AWS),
    )
    tools = pipeline.tool_versions()
    with log.step(f"Rendering {spec.name} {ctx.version} (aws, emulated)"):
        rendered = render(ctx, layout)
    with log.step("packer validate"):
        build.validate(rendered)
    with log.step(f"packer build (amazon-ebs in {settings.region}, EMULATED at {target.endpoint_url})"):
        ami = build.build_ami(rendered)
    entry = pipeline.catalog_entry(
        ctx,
        rendered=rendered,
        artifact_id=standin.artifact_id,
        ref=ami.id,
        verified=standin.verified,
        tools=tools,
        input_fingerprint=fingerprint_sha256,
    )
    entry["artifact"] = {
        "type": aws_catalog.AMI,
        "id": ami.ami_id,
        "ref": ami.id,
        "region": ami.region,
        "name": f"{spec.name}-{ctx.version}",
        "emulated": True,
        "standin_id": standin.artifact_id,
    }
    with log.step(f"Publishing {spec.name} {ctx.version} ({ami.id}, emulated) to {catalog.location}"):
        published = lifecycle.publish(
            catalog,
            entry,
            pipeline.version_manifest(ctx, inputs, standin.verified),
            standin.verified.report.junit,
            signer=signer,
            actor=tag.actor(layout.root),
        )
    actx = aws_catalog.context(layout)
    aws_catalog.distribute_version(
        actx, catalog, spec.name, ctx.version, signer=signer, actor=tag.actor(layout.root)
    )
    for line in aws_catalog.sync_channels(actx, catalog, [spec.name]):
        log.note(line)
    return pipeline.BakeResult(
        image=spec.name,
        version=ctx.version,
        ref=ami.id,
        artifact_id=ami.ami_id,
        published=True,
        entry=published,
        verified=standin.verified,
    )


def _aws_settings(spec: ImageSpec) -> Any:
    if Target.AWS not in spec.targets or spec.aws is None:
        raise ConfigError(
            f"{spec.definition}: targets: {spec.name} has no aws target",
            hint='add "aws" to targets and an [aws] table',
        )
    return spec.aws


def _filter_text(spec: ImageSpec) -> str:
    source = spec.aws.source if spec.aws else None
    if source is None or source.name is None:
        return "(none)"
    return f"filter name={source.name} owners={','.join(source.owners)}"


def _source_from_ssm(spec: ImageSpec, target: aws.AwsTarget) -> str | None:
    """The AMI id an SSM parameter names (e.g. Debian's public one); None: Packer's filter decides."""
    assert spec.aws is not None
    source = spec.aws.source
    if source is None or source.ssm_parameter is None:
        return None
    ssm = aws.client(target, "ssm", spec.aws.region)
    answer = aws.call(f"resolve the source AMI of {spec.name}", ssm.get_parameter, Name=source.ssm_parameter)
    return str(answer["Parameter"]["Value"])
