"""Keeping a catalog valid and current, whatever its format: ``refresh`` re-signs it (a new
generation and expiry, nothing else), ``migrate`` turns a v2 catalog (index.json) into a v3
one (docs/catalog-v3.md) and ``sweep`` deletes the v3 files nothing names any more.
`factory catalog refresh|migrate|sweep` only say what these did."""

from __future__ import annotations

from datetime import datetime

from factory.catalog import freshness
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.catalog.v3.migrate import Migration, migrate_v2
from factory.catalog.v3.sweep import Policy, Swept
from factory.catalog.v3.sweep import sweep as sweep_v3
from factory.catalog.v3.writer import WriterV3
from factory.core.errors import CatalogError


def refresh(catalog: Catalog, signer: Signer, actor: str) -> tuple[str, int, str]:
    """Re-sign the catalog: (the file signed, its new generation, when it expires)."""
    v3 = catalog.v3()
    if v3 is not None:
        head = WriterV3(v3, expiry_days=catalog.expiry_days).refresh(signer, actor)
        return v3.where, head.generation, head.expires
    if not catalog.exists():
        raise CatalogError(
            f"{catalog.where}: no catalog to refresh", hint="a bake publishes the first version"
        )
    generation, expires = freshness.refresh(catalog, signer, actor)
    return catalog.where, generation, expires


def migrate(catalog: Catalog, signer: Signer) -> Migration:
    """The v2 catalog at ``catalog``'s place becomes v3, with this reader's keys, cache and expiry;
    done before: nothing is written (``Migration.done`` False)."""
    return migrate_v2(
        catalog.store, catalog.keys_root, signer, cache=catalog.cache, expiry_days=catalog.expiry_days
    )


def sweep(catalog: Catalog, policy: Policy, now: datetime, *, dry_run: bool) -> Swept:
    """The unreferenced files of a v3 catalog deleted (``dry_run``: only listed). A v2 catalog
    replaces index.json in place and leaves nothing behind to sweep: refused, as bad input."""
    v3 = catalog.v3()
    if v3 is None:
        if catalog.exists():
            raise CatalogError(
                f"{catalog.where}: a v2 catalog (index.json, no catalog.json): nothing to sweep",
                hint="only v3 catalogs leave files behind; `factory catalog migrate` makes one",
            )
        raise CatalogError(f"{catalog.where}: no catalog here", hint="check --catalog")
    return sweep_v3(v3, policy, now, dry_run=dry_run)
