"""The static catalog site: one self-contained index.html (no server, no CDN) and index.json."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from factory import state
from factory.catalog import Catalog, atomic_write, iso
from factory.errors import CatalogError, ConfigError


def site_data(catalog: Catalog, doc: Mapping[str, Any], now: datetime) -> dict[str, Any]:
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
                }
            )
        channels = {c: p["version"] for c, p in sorted(data["channels"].items())}
        images.append({"name": name, "channels": channels, "versions": versions})
    return {"generated": iso(now), "generation": doc["generation"], "images": images}


def write_site(catalog: Catalog, doc: Mapping[str, Any], outdir: Path, now: datetime) -> list[Path]:
    data = site_data(catalog, doc, now)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("factory", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
    )
    html = env.get_template("site.html.j2").render(data=data)
    index_json = outdir / "index.json"
    index_html = outdir / "index.html"
    try:
        atomic_write(index_json, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        atomic_write(index_html, html.encode())
    except OSError as exc:
        raise ConfigError(f"{outdir}: cannot write the site there: {exc.strerror or exc}") from None
    return [index_html, index_json]
