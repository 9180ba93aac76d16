"""The catalog on S3, against a real S3 API on loopback (moto's server, tests/aws_server.py):
conditional puts instead of a lock, re-read and re-apply after a lost race, no lost update under
four writer processes, and the same signature checks as on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.catalog import audit, lifecycle, state, trust
from factory.catalog.docs_types import IndexDoc
from factory.catalog.s3 import S3Store, split
from factory.catalog.storage import Conflict, Exists, LocalStore, Store
from factory.catalog.store import Catalog, open_catalog
from factory.catalog.v3 import writer
from factory.catalog.v3.audit import audit as audit_v3
from factory.catalog.v3.formats import CATALOG
from factory.catalog.v3.writer import Change
from factory.core import awsapi as aws
from factory.core.errors import CatalogError, ConfigError
from tests.aws_server import AwsServer, aws_server  # noqa: F401 -- the session fixture

from .catalog_fixture import entry, make_layout, publish_one
from .conftest import REPO

pytestmark = pytest.mark.integration

WRITERS = 4
PER_WRITER = 6
BUCKET = "golden-catalog"
URL = f"s3://{BUCKET}/teams/platform"
ORDER = ("dev", "staging", "prod")


@dataclass(frozen=True)
class Shared:
    server: AwsServer
    root: Path
    key: Path
    tmp: Path

    def catalog(self) -> Catalog:
        return open_catalog(URL, self.root / "keys", aws.AwsTarget(self.server.url))


@pytest.fixture(scope="module")
def shared(aws_server: AwsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:  # noqa: F811
    aws_server.reset()
    aws_server.client("s3").create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    tmp = tmp_path_factory.mktemp("s3catalog")
    root, key = make_layout(tmp / "repo")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws_server.env.items():  # the standard chain finds the fake credentials
            patch.setenv(name, value)
        yield Shared(server=aws_server, root=root, key=key, tmp=tmp)


@dataclass(frozen=True)
class Race:
    codes: list[int]
    outputs: list[str]
    doc: IndexDoc


@pytest.fixture(scope="module")
def race(shared: Shared) -> Race:
    """Four processes publish and promote at the same moment into one S3 catalog."""
    env = {**os.environ, **shared.server.env, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.s3_writer",
                URL,
                str(shared.root / "keys"),
                str(shared.key),
                str(i),
                str(PER_WRITER),
                str(shared.tmp),
                shared.server.url,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(WRITERS)
    ]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    return Race(codes=[p.returncode for p in procs], outputs=outputs, doc=shared.catalog().load())


def overwrite(catalog: Catalog, data: bytes, rel: str = CATALOG) -> None:
    """What whoever can write the bucket does: replace ``rel`` (catalog.json, the file every reader
    starts from) with ``data``, no questions asked."""
    found = catalog.store.read(rel)
    catalog.store.replace(rel, data, found[1] if found else None)


# -- the Store protocol, the same on both stores ------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, shared: Shared, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    bucket = f"contract-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    shared.server.client("s3").create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    return S3Store(f"s3://{bucket}/p", aws.AwsTarget(shared.server.url))


def test_store_reads_nothing_where_nothing_was_written(store: Store) -> None:
    assert (store.read("a/b.json"), store.exists("a/b.json"), store.names("a")) == (None, False, [])


def test_store_create_writes_once_and_refuses_other_bytes(store: Store) -> None:
    store.create("m/x.json", b"one")
    store.create("m/x.json", b"one")  # a re-applied change writes the same bytes again
    with pytest.raises(Exists, match="already written with other content"):
        store.create("m/x.json", b"two")
    assert (store.read("m/x.json") or (b"", ""))[0] == b"one"


def test_store_replace_is_conditional_on_what_was_read(store: Store) -> None:
    store.replace("catalog.json", b"first", None)
    with pytest.raises(Conflict):
        store.replace("catalog.json", b"second", None)  # someone created it meanwhile
    first = store.read("catalog.json")
    assert first is not None
    store.replace("catalog.json", b"second", first[1])
    with pytest.raises(Conflict):
        store.replace("catalog.json", b"third", first[1])  # based on a read that is now stale
    assert (store.read("catalog.json") or (b"", ""))[0] == b"second"


def test_store_lists_and_deletes(store: Store) -> None:
    for rel in ("m/b/2.json", "m/a/1.json", "other.json"):
        store.create(rel, b"x")
    assert store.names("m") == ["m/a/1.json", "m/b/2.json"]
    store.delete("m/a/1.json")
    store.delete("m/a/1.json")  # deleting what is gone is not an error
    assert (store.names("m"), store.exists("other.json")) == (["m/b/2.json"], True)


def test_store_describes_files_where_they_are(store: Store) -> None:
    assert store.describe("catalog.json").endswith("/catalog.json")
    assert store.describe("catalog.json").startswith(store.location)


def test_every_writer_succeeds(race: Race) -> None:
    failed = "\n".join(
        f"writer {i}:\n{out[-3000:]}"
        for i, (code, out) in enumerate(zip(race.codes, race.outputs, strict=True))
        if code
    )
    assert race.codes == [0] * WRITERS, failed


@pytest.mark.parametrize("i", range(WRITERS))
def test_no_publish_is_lost(race: Race, i: int) -> None:
    versions = {e["version"] for e in race.doc["images"][f"w{i}"]["versions"]}
    assert versions == {entry(f"w{i}", n).version for n in range(1, PER_WRITER + 1)}


@pytest.mark.parametrize("i", range(WRITERS))
def test_no_promotion_is_lost(race: Race, i: int) -> None:
    promoted = [
        r["to"]
        for r in race.doc["history"]
        if r["actor"] == f"writer{i}" and r["action"] == "promote" and r["channel"] == "dev"
    ]
    assert promoted == [entry(f"w{i}", n).version for n in range(1, PER_WRITER + 1)]


@pytest.mark.parametrize("i", range(WRITERS))
def test_each_channel_ends_on_the_last_promotion(race: Race, i: int) -> None:
    assert state.current(race.doc, f"w{i}", "dev") == entry(f"w{i}", PER_WRITER).version


def test_generation_counts_every_update(race: Race) -> None:
    assert race.doc["generation"] == WRITERS * PER_WRITER * 2


def test_the_writers_really_raced(race: Race) -> None:
    """At least one writer lost a race and re-applied its change (else this test proves little)."""
    assert any("re-applying" in out for out in race.outputs), race.outputs


def test_catalog_verifies_after_the_race(race: Race, shared: Shared) -> None:
    assert audit_v3(shared.catalog().require_v3()) == []


def test_lost_race_is_reapplied_on_the_winner(shared: Shared, tmp_path: Path) -> None:
    """Another writer replaces the index between this writer's read and its write: the change
    runs again on the new index, and both changes are there."""
    signer = trust.load_signer(shared.key)
    ours, theirs = shared.catalog(), shared.catalog()
    publish_one(ours, signer, "race", 1, actor="setup", scratch=tmp_path)
    publish_one(ours, signer, "race", 2, actor="setup", scratch=tmp_path)
    v1, v2 = entry("race", 1).version, entry("race", 2).version
    runs: list[int] = []

    def promote(txn: lifecycle.Writing) -> None:
        assert isinstance(txn, Change)
        runs.append(txn.view.head.generation)
        if len(runs) == 1:  # the other writer gets in first, once
            lifecycle.update(
                theirs,
                signer,
                "them",
                lambda t: lifecycle.promote(t, theirs, ORDER, image="race", version=v1, channel="dev"),
            )
        lifecycle.promote(txn, ours, ORDER, image="race", version=v2, channel="dev")

    lifecycle.update(ours, signer, "us", promote)
    doc = ours.load()
    assert runs == [runs[0], runs[0] + 1]
    # This image's own records: the merged history orders other images' records of the same second
    # (the race's last, when this test starts within a second of it) by time alone.
    races = [r for r in doc["history"] if r["image"] == "race"]
    promotions = [(r["actor"], r["to"]) for r in races if r["action"] == "promote"]
    assert promotions[-2:] == [("them", v1), ("us", v2)]
    assert state.current(doc, "race", "dev") == v2


def test_endless_races_fail_clearly(shared: Shared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "BACKOFF_CAP_S", 0.2)  # the attempts, not the waits, are the point
    signer = trust.load_signer(shared.key)
    ours, theirs = shared.catalog(), shared.catalog()
    publish_one(ours, signer, "endless", 1, actor="setup", scratch=tmp_path)
    version = entry("endless", 1).version
    before = ours.index_bytes()

    def always_beaten(txn: lifecycle.Writing) -> None:
        overwrite(theirs, (ours.index_bytes() or b"") + b" ")  # same content, new ETag
        lifecycle.promote(txn, ours, ORDER, image="endless", version=version, channel="dev")

    with pytest.raises(CatalogError, match=f"changed under this update {writer.RACING_ATTEMPTS} times"):
        lifecycle.update(ours, signer, "us", always_beaten)
    assert (ours.index_bytes() or b"").rstrip() == (before or b"").rstrip()


def test_first_catalog_json_is_created_only_once(shared: Shared, tmp_path: Path) -> None:
    """Two writers that both found no catalog: If-None-Match lets only one create it."""
    shared.server.client("s3").create_bucket(Bucket="fresh")  # type: ignore[attr-defined]
    target = aws.AwsTarget(shared.server.url)
    first = Catalog(S3Store("s3://fresh/c", target), shared.root / "keys")
    assert not first.exists()
    publish_one(first, trust.load_signer(shared.key), "one", 1, actor="a", scratch=tmp_path)
    second = Catalog(S3Store("s3://fresh/c", target), shared.root / "keys")
    assert second.exists()
    assert second.load()["generation"] == 1


def test_tampered_s3_entry_is_refused(shared: Shared, tmp_path: Path) -> None:
    shared.server.client("s3").create_bucket(Bucket="tamper")  # type: ignore[attr-defined]
    catalog = open_catalog("s3://tamper", shared.root / "keys", aws.AwsTarget(shared.server.url))
    publish_one(catalog, trust.load_signer(shared.key), "t", 1, actor="a", scratch=tmp_path)
    [rel] = catalog.store.names("entries")  # the version's signed entry, content-addressed
    raw = catalog.read_file(rel).replace(b'"passed": 10', b'"passed": 11')
    overwrite(catalog, raw, rel)
    with pytest.raises(CatalogError, match=rf"s3://tamper/{rel}: sha256 is .* changed after it was written"):
        audit.trusted(catalog)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("s3://", "is not an S3 bucket name"), ("s3://UPPER/x", "is not an S3 bucket name"),
     ("s3://bucket/a//b", "empty"), ("s3://bucket/../x", "'..'")],
)  # fmt: skip
def test_bad_s3_urls_name_the_field(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        split(url)


def test_older_s3_catalog_json_put_back_is_refused(shared: Shared, tmp_path: Path) -> None:
    """The rollback attack on S3: an older catalog.json put back under the prefix (catalog.freshness)."""
    shared.server.client("s3").create_bucket(Bucket="rollback")  # type: ignore[attr-defined]
    catalog = open_catalog("s3://rollback/c", shared.root / "keys", aws.AwsTarget(shared.server.url))
    catalog.cache = tmp_path / "cache"
    signer = trust.load_signer(shared.key)
    publish_one(catalog, signer, "rb", 1, actor="a", scratch=tmp_path)
    old = catalog.index_bytes() or b""
    publish_one(catalog, signer, "rb", 2, actor="a", scratch=tmp_path)
    assert audit.trusted(catalog)["generation"] == 2
    overwrite(catalog, old)
    with pytest.raises(CatalogError, match=r"s3://rollback/c/catalog.json: generation 1 .*rolled back"):
        audit.trusted(catalog)
    with pytest.raises(CatalogError, match="rolled back"):  # nor does a writer fork from it
        publish_one(catalog, signer, "rb", 3, actor="a", scratch=tmp_path)
    assert catalog.index_bytes() == old


def test_catalog_json_of_another_s3_catalog_is_refused(shared: Shared, tmp_path: Path) -> None:
    shared.server.client("s3").create_bucket(Bucket="substitute")  # type: ignore[attr-defined]
    target = aws.AwsTarget(shared.server.url)
    ours = open_catalog("s3://substitute/ours", shared.root / "keys", target)
    theirs = open_catalog("s3://substitute/theirs", shared.root / "keys", target)
    ours.cache = tmp_path / "cache"
    signer = trust.load_signer(shared.key)
    publish_one(ours, signer, "sub", 1, actor="a", scratch=tmp_path)
    for n in (1, 2, 3):
        publish_one(theirs, signer, "sub", n, actor="a", scratch=tmp_path)
    audit.trusted(ours)
    overwrite(ours, theirs.index_bytes() or b"")
    with pytest.raises(CatalogError, match=r"s3://substitute/ours/catalog.json: catalog .* another catalog"):
        audit.trusted(ours)


def test_s3_trusted_state_is_keyed_by_prefix_and_endpoint(shared: Shared) -> None:
    keys = shared.root / "keys"
    here = open_catalog("s3://bucket/p", keys, aws.AwsTarget(shared.server.url))
    there = open_catalog("s3://bucket/p", keys, aws.AwsTarget("http://127.0.0.1:1"))
    assert here.trust_location != there.trust_location
    assert here.trust_location.startswith("s3://bucket/p at ")
