"""One locked change of the catalog: what a writer records inside ``Catalog.transaction``."""

from __future__ import annotations

from datetime import datetime

from factory.catalog import history
from factory.catalog.docs_types import HistoryRecord, IndexDoc
from factory.catalog.trust import Signer
from factory.core.clock import iso


class Txn(history.Recorder):
    """One locked change of the catalog: records are signed, chained and applied as they are added."""

    def __init__(self, doc: IndexDoc, signer: Signer, actor: str, now: datetime) -> None:
        self.doc = doc
        self.signer = signer
        self.actor = actor
        self.now = now
        self.added: list[HistoryRecord] = []

    def add(self, event: history.Event) -> HistoryRecord:
        rec = history.make_record(self.doc, self.signer, event, actor=self.actor, at=iso(self.now))
        history.apply(self.doc, rec)
        return rec
