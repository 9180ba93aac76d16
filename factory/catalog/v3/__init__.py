"""Catalog v3: TUF-style metadata, so that a reader pays for the image it asks about (docs/catalog-v3.md).

``formats`` (file names and documents), ``reader`` (verified reads), ``chain`` (one image's
working state in a change), ``writer`` (one change, committed by catalog.json), ``migrate``
(a v2 index.json becomes a v3 catalog).
"""
