"""The catalog section of `make bench` (issue 13): the bulk builder makes a catalog the audit, the
resolver and the CLI accept; the byte counter and the goal rows are pure. No processes, no server,
no timings asserted."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench import catalog_ops
from bench.catalog_bulk import ORDER, PlainStore, Shape, build, image_name, version_of
from bench.catalog_bytes import ByteCounter, Call, summary
from bench.run import Row
from factory.catalog import resolve
from factory.catalog.storage import LocalStore
from factory.catalog.store import Catalog
from factory.catalog.v3.audit import audit
from factory.catalog.v3.reader import CatalogV3
from factory.cli.main import main_inner
from factory.core.clock import now_utc

# -- the bulk builder ------------------------------------------------------------------------

SHAPE = Shape(versions=18, images=3, per_txn=4)  # 6 a image, in two transactions of 4 and 2


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build(tmp_path_factory.mktemp("bulk"), SHAPE)


def catalog_dir(made: dict[str, Any]) -> Path:
    return Path(made["checkout"]) / ".factory" / "catalog"


def test_shape_spreads_the_versions_evenly() -> None:
    assert (Shape(versions=100_000).per_image, Shape(versions=100_000).total) == (5000, 100_000)
    assert Shape(versions=5, images=20).per_image == 1  # every image gets one at least


def test_versions_sort_by_creation_across_images() -> None:
    made = [version_of(SHAPE, image, index) for index in range(3) for image in range(SHAPE.images)]
    assert [v for v, _, _ in made] == sorted(v for v, _, _ in made)
    assert len({v for v, _, _ in made}) == len(made)


def test_plain_store_creates_nested_files(tmp_path: Path) -> None:
    store = PlainStore(tmp_path)
    store.create("a/b/c.json", b"{}")
    store.create("a/b/d.json", b"[]")
    assert (store.read("a/b/c.json") or (b"", ""))[0] == b"{}"
    assert sorted(store.names("a")) == ["a/b/c.json", "a/b/d.json"]


def test_the_bulk_catalog_passes_the_audit_with_its_files(built: dict[str, Any]) -> None:
    keys = Path(built["checkout"]) / "keys"
    assert audit(CatalogV3(LocalStore(catalog_dir(built)), keys), files=True) == []
    assert built["versions"] == SHAPE.total


def test_the_bulk_catalog_has_every_version_and_the_channels(built: dict[str, Any]) -> None:
    view = CatalogV3(LocalStore(catalog_dir(built)), Path(built["checkout"]) / "keys").open()
    assert view.images() == [image_name(n) for n in range(SHAPE.images)]
    rows = view.rows("img-01")
    assert [r.version for r in rows] == [version_of(SHAPE, 1, n)[0] for n in range(SHAPE.per_image)]
    channels = view.image("img-01").channels
    assert channels["latest"].version == rows[-1].version
    assert {channels[c].version for c in ORDER} == {rows[-2].version}


def test_resolve_verifies_the_bulk_catalog(built: dict[str, Any]) -> None:
    catalog = Catalog(LocalStore(catalog_dir(built)), Path(built["checkout"]) / "keys")
    found = resolve.resolve(catalog, ORDER, "img-00", "prod", now_utc())
    assert found.entry["version"] == version_of(SHAPE, 0, SHAPE.per_image - 2)[0]


def test_factory_resolve_answers_on_the_bulk_catalog(built: dict[str, Any]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main_inner(["--root", built["checkout"], "resolve", "img-02", "--channel", "prod", "--json"])
    assert code == 0
    assert json.loads(out.getvalue())["version"] == version_of(SHAPE, 2, SHAPE.per_image - 2)[0]


# -- the byte counter ------------------------------------------------------------------------


@dataclass
class Response:
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Model:
    name: str
    http: dict[str, str]


GET = Model("GetObject", {"method": "GET"})
HEAD = Model("HeadObject", {"method": "HEAD"})


def test_the_counter_pairs_each_path_with_its_body_bytes() -> None:
    counter = ByteCounter()
    counter.before_call(params={"url_path": "/p/catalog.json"})
    counter.after_call(http_response=Response({"content-length": "1230"}), model=GET)
    counter.before_call(params={"url_path": "/p/index.json"})
    counter.after_call(http_response=Response({"content-length": "999"}), model=HEAD)
    assert counter.take() == [
        Call(operation="GetObject", path="/p/catalog.json", body_bytes=1230),
        Call(operation="HeadObject", path="/p/index.json", body_bytes=0),  # a HEAD sends no body
    ]
    assert counter.take() == []


def test_summary_counts_bytes_gets_and_requests() -> None:
    calls = [Call(operation="HeadObject", path="/a", body_bytes=0),
             Call(operation="GetObject", path="/b", body_bytes=10),
             Call(operation="GetObject", path="/c", body_bytes=5)]  # fmt: skip
    found = summary(calls)
    assert (found["bytes"], found["gets"], found["requests"]) == (15, 2, 3)


# -- the goals -------------------------------------------------------------------------------


def runs(*sizes: int, gets: int = 4) -> dict[str, Any]:
    return {"runs": [{"bytes": b, "gets": gets, "requests": gets + 3} for b in sizes]}


def met(rows: list[Row], word: str) -> bool | None:
    return next(r.met for r in rows if word in r.figure)


def test_s3_rows_met_when_the_bytes_are_the_same_and_small() -> None:
    rows = catalog_ops.s3_rows({1000: runs(12412, 12412), 100_000: runs(12413, 12413)})
    assert [met(rows, w) for w in ("≤ 64 KiB", "requests", "100,000 / 1,000")] == [True, True, True]


def test_s3_rows_broken_when_the_bytes_grow() -> None:
    rows = catalog_ops.s3_rows({1000: runs(12412), 100_000: runs(16800)})
    assert met(rows, "100,000 / 1,000") is False
    assert met(rows, "≤ 64 KiB") is True


def test_s3_rows_broken_past_64_kib_or_with_more_requests() -> None:
    rows = catalog_ops.s3_rows({1000: runs(70_000), 10_000: runs(70_000, gets=5)})
    assert (met(rows, "≤ 64 KiB"), met(rows, "requests")) == (False, False)


def times(resolve_s: float, yardstick_s: float = 0.5, n: int = 3) -> dict[str, Any]:
    return {"times_s": {"resolve": [resolve_s] * n, "yardstick": [yardstick_s] * n}}


def test_flat_row_compares_the_largest_with_1000_in_yardsticks() -> None:
    found = catalog_ops.flat_row({100: times(0.1), 1000: times(0.001), 100_000: times(0.003, 1.0)})
    assert "100,000 / 1,000" in found.figure
    assert found.summary.median == pytest.approx(1.5)
    assert found.met is True


def test_flat_row_of_the_quick_sizes_uses_the_smallest() -> None:
    found = catalog_ops.flat_row({100: times(0.001), 1000: times(0.004)})
    assert "1,000 / 100" in found.figure
    assert found.met is False


def test_op_rows_convert_the_goal_to_yardsticks() -> None:
    rows = catalog_ops.op_rows("promote", 10_000, {"promote": [0.09, 0.11], "yardstick": [0.5, 0.5]})
    assert rows[1].goal == f"≤ {0.1 / catalog_ops.YARDSTICK_REF_S:.2f}"
    assert rows[1].met is True


def test_goal_size_falls_back_to_the_largest_measured() -> None:
    assert catalog_ops.goal_size(catalog_ops.SIZES) == 10_000
    assert catalog_ops.goal_size(catalog_ops.QUICK_SIZES) == 1000


def test_growth_table_says_what_was_not_measured() -> None:
    base = {"first_resolve_s": 0.001, "catalog_files": 10, "build_s": 1.0}
    every = {"resolve": [0.001], "promote": [4.0], "rollback": [4.0], "yardstick": [0.5]}
    table = catalog_ops.growth_table({
        10_000: base | {"times_s": every},
        100_000: base | {"times_s": {"resolve": [0.001], "yardstick": [0.5]}},
    })  # fmt: skip
    promote = next(line for line in table.splitlines() if line.startswith("| promote"))
    assert promote == "| promote | 4000.00 | not measured |"
