"""One locked change of the catalog: what a writer records inside ``Catalog.transaction``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from factory.catalog import history
from factory.catalog.docs_types import HistoryRecord, IndexDoc
from factory.catalog.trust import Signer
from factory.core.clock import iso


class Txn:
    """One locked change of the catalog: records are signed, chained and applied as they are added."""

    def __init__(self, doc: IndexDoc, signer: Signer, actor: str, now: datetime) -> None:
        self.doc = doc
        self.signer = signer
        self.actor = actor
        self.now = now
        self.added: list[HistoryRecord] = []

    def record(
        self,
        action: str,
        image: str,
        *,
        version: str | None = None,
        channel: str | None = None,
        source: str | None = None,
        to: str | None = None,
        reason: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> HistoryRecord:
        event = history.Event(
            action=action,
            image=image,
            version=version,
            channel=channel,
            source=source,
            to=to,
            reason=reason,
            details=details,
        )
        rec = history.make_record(self.doc, self.signer, event, actor=self.actor, at=iso(self.now))
        history.apply(self.doc, rec)
        self.added.append(rec)
        return rec
