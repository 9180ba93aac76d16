"""What a bake records of the version it made: the catalog entry (signed at publication) and the
manifest (inputs, packages with their Debian sources, test counts, the CVEs fixed relative to the
image's previous version). The docker bake (factory.bake.pipeline) and the aws bake
(factory.aws.bake) both build theirs here."""

from __future__ import annotations

from factory.bake import verify
from factory.bake.inputs import used_dependencies
from factory.bake.render import BuildContext, Rendered
from factory.catalog import cves, model, state
from factory.catalog.docs_types import IndexDoc, ManifestDoc, Package
from factory.catalog.store import LATEST


def catalog_entry(
    ctx: BuildContext,
    *,
    rendered: Rendered,
    artifact: model.Artifact,
    verified: verify.Verified,
    tools: dict[str, str],
    input_fingerprint: str,
) -> model.Entry:
    report = verified.report
    return model.Entry(
        image=ctx.image.name,
        version=ctx.version,
        commit=ctx.commit,
        created=ctx.created,
        source=ctx.source,
        artifact=artifact,
        parent=dict(ctx.parent.record),
        template_sha256=rendered.template_sha256,
        tools=tools,
        tests=model.TestCounts(
            passed=report.passed,
            failed=report.failed,
            skipped=report.skipped,
            errors=report.errors,
            duration_s=report.duration_s,
            junit=str(report.junit),
        ),
        package_count=len(verified.packages),
        fingerprint=input_fingerprint,
        dependencies=tuple(d.to_json() for d in used_dependencies(ctx.image)),
        vars_unchecked=tuple(r.name for r in ctx.image.roles if r.vars_unchecked),
    )


def version_manifest(ctx: BuildContext, inputs: dict[str, str], verified: verify.Verified) -> ManifestDoc:
    report = verified.report
    return {
        "schema_version": 1,
        "image": ctx.image.name,
        "version": ctx.version,
        "commit": ctx.commit,
        "inputs": inputs,
        "packages": manifest_packages(verified),
        "files": dict(verified.files),
        "tests": {
            "files": list(ctx.image.tests),
            "passed": report.passed,
            "failed": report.failed,
            "skipped": report.skipped,
        },
    }


def manifest_packages(verified: verify.Verified) -> list[Package]:
    """Each installed package with its Debian source and source version, when dpkg gave them."""
    sources = {name: (source, version) for name, source, version in verified.sources}
    found: list[Package] = []
    for name, version in verified.packages:
        package: Package = {"name": name, "version": version}
        if name in sources:
            package["source"], package["source_version"] = sources[name]
        found.append(package)
    return found


def with_fixed_cves(manifest: ManifestDoc, doc: IndexDoc) -> ManifestDoc:
    """The manifest with the CVEs it fixes relative to the image's `latest` when the bake started:
    what that version's last scan found pending and this one now ships the fix of."""
    previous = state.current(doc, manifest["image"], LATEST)
    if previous is None:
        return manifest
    scan = state.last_record(doc, manifest["image"], previous, "scan")
    fixed = cves.fixed_since(scan, manifest["packages"])
    if scan is None:
        return manifest
    return {**manifest, "cves_fixed": {"relative_to": previous, "cves": fixed}}
