"""The static catalog site: one self-contained index.html (no server, no CDN), index.json, and a copy
of every version's SBOM at the path it has in the catalog (sbom/<image>/<version>.cdx.json).

The page carries its Content-Security-Policy in a ``<meta http-equiv>`` tag, and ``factory serve``
sends the same policy as a header: nothing loads from anywhere (``default-src 'none'``), and the
only style and script that run are the page's own inline blocks, allowed by their SHA-256 hashes
(taken from the template, which has no expressions inside them). A catalog value that slipped
through escaping still could not run a script, load an image or submit a form."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime
from importlib import resources
from pathlib import Path

import jinja2

from factory.catalog import cves, cvetimes, sbom, state
from factory.catalog.docs_types import EntryDoc, IndexDoc, JsonObject
from factory.catalog.indexdoc import state_of
from factory.catalog.store import Catalog
from factory.core.clock import iso
from factory.core.errors import CatalogError, ConfigError
from factory.core.files import atomic_write

TEMPLATE = "site.html.j2"
NONE = "'none'"
_INLINE = re.compile(r"<(style|script)>(.*?)</\1>", re.DOTALL)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("factory", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
    )


def _content_security_policy() -> str:
    source = resources.files("factory").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")
    allowed: dict[str, list[str]] = {"style": [], "script": []}
    for tag, body in _INLINE.findall(source):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        allowed[tag].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(allowed['script']) or NONE}",
            f"style-src {' '.join(allowed['style']) or NONE}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


# The page's policy (and the service's header): the inline blocks of the template, by hash.
CONTENT_SECURITY_POLICY = _content_security_policy()


def _sbom(catalog: Catalog, entry: EntryDoc) -> tuple[JsonObject | None, bytes | None]:
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
    catalog: Catalog, doc: IndexDoc, now: datetime, *, last_channel: str | None = None
) -> tuple[JsonObject, dict[Path, bytes]]:
    """The data the page shows, and the files to publish beside it (site-relative path → bytes).
    Each version lists the CVEs it fixed and those it is still exposed to (the scans' knowledge);
    the filter box highlights the versions on ``last_channel`` (prod) exposed to a CVE typed in."""
    files: dict[Path, bytes] = {}
    known = cves.known(doc)
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
                manifest = catalog.manifest(entry)
            except CatalogError:
                manifest = None
            packages = manifest["packages"] if manifest else []
            fixed = manifest.get("cves_fixed") if manifest else None
            link, raw = _sbom(catalog, entry)
            if raw is not None:
                files[sbom.path_of(name, version)] = raw
            info = state_of(data["states"], version)
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
                    "cves_fixed": [c["id"] for c in fixed["cves"]] if fixed else [],
                    "exposed": cves.exposed_in(packages, known),
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
        # Time to fix: per CVE its scans found pending, when the fix was first seen, which version
        # shipped it and when that reached each channel; the median hours to the last channel.
        found = cvetimes.timelines(catalog, doc, name) if last_channel else []
        images.append(
            {
                "name": name,
                "channels": channels,
                "versions": versions,
                "time_to_fix": [t.as_json(last_channel) for t in found if last_channel],
                "median_hours": cvetimes.median_hours(found, last_channel) if last_channel else None,
            }
        )
    page: JsonObject = {
        "generated": iso(now),
        "generation": doc["generation"],
        "last_channel": last_channel,
        "images": images,
    }
    return page, files


def write_site(
    catalog: Catalog, doc: IndexDoc, outdir: Path, now: datetime, *, last_channel: str | None = None
) -> list[Path]:
    data, files = site_data(catalog, doc, now, last_channel=last_channel)
    html = _environment().get_template(TEMPLATE).render(data=data, csp=CONTENT_SECURITY_POLICY)
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
