"""The static catalog site: one self-contained index.html (no server, no CDN), index.json, and a copy
of every version's SBOM at the path it has in the catalog (sbom/<image>/<version>.cdx.json)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from factory.catalog import sbom, state
from factory.catalog.store import Catalog
from factory.core.clock import iso
from factory.core.errors import CatalogError, ConfigError
from factory.core.files import atomic_write


def _sbom(catalog: Catalog, entry: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bytes | None]:
    """The SBOM link of a version and the bytes to copy; no link when the file is not as signed."""
    try:
        raw = catalog.sbom(entry)
    except CatalogError as exc:
        return {"href": None, "error": exc.message}, None
    if raw is None:
        return None, None
    href = sbom.path_of(entry["image"], entry["version"]).as_posix()
    return {
        "href": href,
        "sha256": entry["sbom"]["sha256"],
        "spec_version": entry["sbom"]["spec_version"],
    }, raw


def site_data(
    catalog: Catalog, doc: Mapping[str, Any], now: datetime
) -> tuple[dict[str, Any], dict[Path, bytes]]:
    """The data the page shows, and the files to publish beside it (site-relative path → bytes)."""
    files: dict[Path, bytes] = {}
    images = []
    for name, data in sorted(doc["images"].items()):
        versions = []
        for entry in catalog.versions(name, doc):
            version = entry["version"]
            try:
                keyid = catalog.verify_entry(entry)
                signature = {"verified": True, "keyid": keyid}
            except CatalogError as exc:
                signature = {"verified": False, "error": exc.message}
            try:
                packages = catalog.manifest(entry)["packages"]
            except CatalogError:
                packages = []
            link, raw = _sbom(catalog, entry)
            if raw is not None:
                files[sbom.path_of(name, version)] = raw
            info = data["states"].get(version, {})
            versions.append(
                {
                    "version": version,
                    "commit": entry["commit"],
                    "created": entry["created"],
                    "parent": entry["parent"],
                    "artifact": entry["artifact"],
                    "tests": entry["tests"],
                    "package_count": entry["package_count"],
                    "packages": packages,
                    "status": state.status(doc, name, version, now),
                    "reason": info.get("reason"),
                    "replacement": info.get("replacement"),
                    "collected": bool(info.get("collected")),
                    "channels": sorted(c for c, p in data["channels"].items() if p["version"] == version),
                    "signature": signature,
                    "sbom": link,
                }
            )
        channels = {c: p["version"] for c, p in sorted(data["channels"].items())}
        images.append({"name": name, "channels": channels, "versions": versions})
    return {"generated": iso(now), "generation": doc["generation"], "images": images}, files


def write_site(catalog: Catalog, doc: Mapping[str, Any], outdir: Path, now: datetime) -> list[Path]:
    data, files = site_data(catalog, doc, now)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("factory", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
    )
    html = env.get_template("site.html.j2").render(data=data)
    index_json = outdir / "index.json"
    index_html = outdir / "index.html"
    copies = [outdir / rel for rel in files]
    try:
        # The files first, the page last: a link on the page never points at a file not yet written.
        for rel, raw in files.items():
            atomic_write(outdir / rel, raw)
        atomic_write(index_json, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        atomic_write(index_html, html.encode())
    except OSError as exc:
        raise ConfigError(f"{outdir}: cannot write the site there: {exc.strerror or exc}") from None
    return [*copies, index_json, index_html]  # in the order written
