"""The aws target's bake, as a table of contents: parent AMI → (stand-in) → render → validate →
packer build (amazon-ebs) → evidence → publish → distribute → SSM.

Against real AWS the roles and the Testinfra gate run inside the Packer build, on the build
instance, before the AMI is created (factory/templates/aws.json.j2, factory.aws.remote_gate); the gate
leaves the JUnit report, the package list and the file checksums in the build directory.

Against a local AWS API (``--endpoint-url``, moto) no EC2 instance boots, so Packer runs with
``communicator: none`` and cannot provision or test anything. The build is then EMULATED and says
so in its output and in its catalog entry (``artifact.emulated``). So that no unverified artifact
is ever published, an emulated bake first bakes the same definition and commit in a podman
stand-in (factory.bake.pipeline: the same roles, the same Testinfra suite); the version's evidence,
packages and SBOM are the stand-in's, and ``artifact.standin_id`` names it. A layered image's
stand-in is built FROM its parent's stand-in, and its AMI from its parent's AMI.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from factory.aws import hooks as aws_catalog
from factory.aws import remote_gate
from factory.bake import packer as build
from factory.bake import pipeline, record
from factory.bake.inputs import HashCache, fingerprint, input_hashes, parent_identity
from factory.bake.render import AwsBuild, ParentRef, Rendered, render, structural_sha256
from factory.bake.verify import Verified, parse_junit
from factory.catalog import audit, hooks, model, publishing, state, targets, trust
from factory.catalog.docs_types import IndexDoc
from factory.catalog.store import LATEST, Catalog, catalog_of
from factory.core import awsapi as aws
from factory.core import log
from factory.core import source as tag
from factory.core.aws_config import AwsSettings
from factory.core.config import ImageSpec, Layout, Target, load_image
from factory.core.errors import ConfigError, ExternalToolError

EMULATED_NOTE = (
    "EMULATED: the AWS API is a local emulator; no EC2 instance boots. The roles and the Testinfra "
    "suite run in a podman stand-in built from the same definition and commit."
)


@dataclass(frozen=True, kw_only=True)
class Evidence:
    verified: Verified
    standin_id: str | None  # the podman stand-in of an emulated build


def bake(layout: Layout, name: str, *, source_ami: str | None = None) -> pipeline.BakeResult:
    spec = load_image(layout, name)
    settings = spec.aws_settings()
    target = aws.AwsTarget(layout.aws_endpoint)
    catalog = catalog_of(layout)
    doc = audit.trusted(catalog)
    targets.require_target(catalog, doc, targets.AMI)
    aws_catalog.check_endpoint(catalog, doc, target)  # emulated and real AMIs never share a catalog
    signer = catalog.check_signer(trust.load_signer())
    source = tag.require_clean(
        tag.source_state(layout.root), layout.root, why="a dirty build is never published"
    )
    parent = parent_ami(spec, settings, catalog, doc, source_ami=source_ami, target=target)
    standin = None
    if target.emulated:
        log.warn(EMULATED_NOTE)
        with log.step(f"Stand-in: {spec.name} in podman (roles + Testinfra gate)"):
            standin = pipeline.bake(layout, name, publish=False)
        _check_same_parent(spec, catalog, parent)
    ctx = replace(
        pipeline.new_context(spec, source, parent),
        target=Target.AWS,
        aws=AwsBuild(source_ami=parent.artifact_id or None, endpoint_url=target.endpoint_url),
    )
    inputs, fingerprint_sha256 = _inputs(spec, layout, parent)
    tools = pipeline.tool_versions()
    mode = f"EMULATED at {target.endpoint_url}" if target.emulated else "build instance + Testinfra gate"
    with log.step(f"Rendering {spec.name} {ctx.version} (aws)"):
        rendered = render(ctx, layout)
    with log.step("packer validate"):
        build.validate(rendered)
    with log.step(f"packer build (amazon-ebs in {settings.region}, {mode})"):
        # An emulator gets dummy credentials, never the caller's (core.awsapi.EMULATOR_ENV).
        ami = build.build_ami(rendered, env=aws.EMULATOR_ENV if target.emulated else None)
    evidence = (
        Evidence(verified=standin.verified, standin_id=standin.artifact_id)
        if standin is not None and standin.verified is not None
        else Evidence(verified=gate_evidence(rendered), standin_id=None)
    )
    entry = record.catalog_entry(
        ctx,
        rendered=rendered,
        artifact=model.Ami(
            id=ami.ami_id,
            ref=ami.id,
            region=ami.region,
            name=f"{spec.name}-{ctx.version}",
            emulated=target.emulated,
            standin_id=evidence.standin_id,
            endpoint=target.endpoint_url,
        ),
        verified=evidence.verified,
        tools=tools,
        input_fingerprint=fingerprint_sha256,
    )
    actor = tag.actor(layout.root)
    with log.step(f"Publishing {spec.name} {ctx.version} ({ami.id}) to {catalog.location}"):
        published = publishing.publish(
            catalog,
            entry,
            record.with_fixed_cves(record.version_manifest(ctx, inputs, evidence.verified), doc),
            evidence.verified.report.junit,
            signer=signer,
            actor=actor,
        )
    change = hooks.Change(layout=layout, catalog=catalog, images=(spec.name,), actor=actor, signer=signer)
    try:
        actx = aws_catalog.context(layout, catalog, catalog.load())
        aws_catalog.distribute_version(actx, catalog, spec.name, ctx.version, signer=signer, actor=actor)
    except ExternalToolError as exc:
        hooks.fail(change, [spec.name], [f"aws: distribute {spec.name} {ctx.version}: {exc.message}"])
    for line in hooks.follow(change):
        log.note(line)
    return pipeline.BakeResult(
        image=spec.name,
        version=ctx.version,
        ref=ami.id,
        artifact_id=ami.ami_id,
        published=True,
        entry=published,
        verified=evidence.verified,
    )


def parent_ami(
    spec: ImageSpec,
    settings: AwsSettings,
    catalog: Catalog,
    doc: IndexDoc,
    *,
    source_ami: str | None,
    target: aws.AwsTarget,
) -> ParentRef:
    """What the AMI starts from: the parent image's AMI in the build region, an explicit AMI, the
    AMI an SSM parameter names, or (artifact_id "") whatever Packer's source_ami_filter selects."""
    if spec.parent_image is None:
        chosen = source_ami or _source_from_ssm(spec, settings, target)
        described = chosen or _filter_text(settings)
        return ParentRef(
            ref=f"ami:{described}", artifact_id=chosen or "", record={"bootstrap": {"source_ami": described}}
        )
    if source_ami:
        raise ConfigError(
            f"--source-ami: {spec.name} starts from its parent {spec.parent_image}'s AMI",
            hint="--source-ami is for images without a parent image",
        )
    version = state.current(doc, spec.parent_image, LATEST)
    if version is None:
        raise ConfigError(
            f"{spec.definition}: parent.image: {spec.parent_image!r} has no published AMI "
            f"in {catalog.where}",
            hint=f"bake the parent first: factory bake {spec.parent_image} --target aws",
        )
    entry = catalog.find(spec.parent_image, version, doc)
    catalog.verify_entry(entry)
    in_region = [a for a in targets.regional_amis(doc, entry) if a.region == settings.region]
    if not in_region:
        raise ConfigError(
            f"{spec.definition}: aws.region: {spec.parent_image} {version} has no AMI in {settings.region}",
            hint=f"add {settings.region} to the parent's aws.regions and run "
            f"`factory distribute {spec.parent_image} {version}`",
        )
    ami = in_region[0].ami
    if target.emulated:
        _check_ebs_backed(target, settings.region, ami, what=f"{spec.parent_image} {version}")
    return ParentRef(
        ref=f"{settings.region}:{ami}",
        artifact_id=ami,
        record={"image": spec.parent_image, "version": version, "artifact_id": ami},
    )


def _check_ebs_backed(target: aws.AwsTarget, region: str, ami: str, *, what: str) -> None:
    """Packer's amazon-ebs starts only from EBS-backed AMIs. moto registers every AMI it creates
    (Packer's included) with a `standard` root device, so there a layered image cannot start from
    its parent's AMI; say so before the stand-in bake rather than after it."""
    ec2 = aws.client(target, "ec2", region)
    images = aws.call(f"describe the AMI of {what}", ec2.describe_images, ImageIds=[ami])["Images"]
    kind = images[0].get("RootDeviceType") if images else "missing"
    if kind != "ebs":
        raise ExternalToolError(
            f"{target.endpoint_url}: {what} is {ami} in {region}, whose root device is {kind!r}; "
            "Packer's amazon-ebs only starts from EBS-backed AMIs",
            hint="moto registers every AMI it creates with a 'standard' root device, so a layered "
            "image cannot be emulated against it; real AWS AMIs are EBS-backed",
        )


def gate_evidence(rendered: Rendered) -> Verified:
    """What the gate inside the Packer build left behind: JUnit report, packages, file checksums."""
    junit = rendered.build_dir / "junit.xml"
    packages, files = remote_gate.read_evidence(rendered.gate or rendered.build_dir)
    sources = remote_gate.read_sources(rendered.gate or rendered.build_dir)
    return Verified(report=parse_junit(junit), packages=packages, sources=sources, files=files)


def _check_same_parent(spec: ImageSpec, catalog: Catalog, parent: ParentRef) -> None:
    """The stand-in was built FROM the parent's `latest` as it was then; so must the AMI be."""
    if spec.parent_image is None:
        return
    now = state.current(audit.trusted(catalog), spec.parent_image, LATEST)
    if now != parent.record.get("version"):
        raise ConfigError(
            f"{spec.parent_image}: `latest` moved from {parent.record.get('version')} to {now} "
            "during this bake",
            hint="bake again: the stand-in and the AMI must start from the same parent version",
        )


def _inputs(spec: ImageSpec, layout: Layout, parent: ParentRef) -> tuple[dict[str, str], str]:
    cache = HashCache(layout.cache / "file-hashes.json")
    inputs = input_hashes(spec, layout, cache)
    cache.save()
    identity = parent_identity(parent.record)
    return inputs, fingerprint(
        spec, inputs, parent=identity, template_sha256=structural_sha256(spec, Target.AWS)
    )


def _filter_text(settings: AwsSettings) -> str:
    source = settings.source
    if source is None or source.name is None:
        return "(none)"
    return f"filter name={source.name} owners={','.join(source.owners)}"


def _source_from_ssm(spec: ImageSpec, settings: AwsSettings, target: aws.AwsTarget) -> str | None:
    """The AMI id an SSM parameter names (e.g. Debian's public one); None: Packer's filter decides."""
    source = settings.source
    if source is None or source.ssm_parameter is None:
        return None
    ssm = aws.client(target, "ssm", settings.region)
    answer = aws.call(f"resolve the source AMI of {spec.name}", ssm.get_parameter, Name=source.ssm_parameter)
    return str(answer["Parameter"]["Value"])
