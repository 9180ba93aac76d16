"""`factory query`: which published versions and channels ship a package, from a real signed
catalog and the package index derived from it (factory/catalog/query.py)."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from factory.__main__ import main
from factory.catalog import lifecycle, publishing, query
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.core.clock import now_utc
from factory.core.config import Layout
from factory.core.errors import CatalogError, ConfigError
from tests.fixtures import tamper_v3
from tests.unit.conftest import ACTOR, JUNIT, ORDER, KeyPair, make_entry, make_manifest, version_id

# openssl in each version, oldest first
BASE = ("3.0.11-1~deb12u2", "3.0.15-1~deb12u1", "3.0.16-1~deb12u1", "3.0.17-1~deb12u2")
NGINX = ("3.0.15-1~deb12u1", "3.0.17-1~deb12u2")
# libedge in each version of `tools`: Debian ordering's corner cases
EDGE = ("2.9-1", "3.0~rc1-1", "3.0-1", "1:2.0-1", "3.0.15-1+deb12u1", "3.0.15-1+deb12u2")


def publish(catalog: Catalog, signer: Signer, image: str, n: int, packages: dict[str, str]) -> str:
    """Publish version ``n`` of ``image`` shipping ``packages`` (name -> version) through lifecycle."""
    version = version_id(n)
    junit = catalog.root.parent / "junit-src" / image / f"{version}.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.write_text(JUNIT.format(image=image, version=version), encoding="utf-8")
    manifest = make_manifest(image, version) | {
        "packages": [{"name": k, "version": v} for k, v in sorted(packages.items())]
    }
    publishing.publish(catalog, make_entry(image, version), manifest, junit, signer=signer, actor=ACTOR)
    return version


@dataclass(frozen=True)
class Shelf:
    """base (4 versions), nginx (2) and tools (6, one per EDGE); base[1] on dev and staging,
    base[0] revoked."""

    catalog: Catalog
    signer: Signer
    cache: Path
    versions: dict[str, tuple[str, ...]]

    @classmethod
    def build(cls, catalog: Catalog, signer: Signer, cache: Path) -> Shelf:
        versions: dict[str, list[str]] = {"base": [], "nginx": [], "tools": []}
        n = 0
        for image, openssl in [*(("base", v) for v in BASE), *(("nginx", v) for v in NGINX)]:
            n += 1
            versions[image].append(
                publish(catalog, signer, image, n, {"openssl": openssl, "bash": "5.2.15-2"})
            )
        for edge in EDGE:
            n += 1
            versions["tools"].append(publish(catalog, signer, "tools", n, {"libedge": edge}))
        with lifecycle.transaction(catalog, signer, ACTOR) as txn:
            for channel in ("dev", "staging"):
                lifecycle.promote(
                    txn, catalog, ORDER, image="base", version=versions["base"][1], channel=channel
                )
            lifecycle.revoke(txn, catalog, "base", versions["base"][0], reason="CVE-2026-0001")
        return cls(catalog, signer, cache, {k: tuple(v) for k, v in versions.items()})

    def copy(self, root: Path, keys_root: Path, cache: Path) -> Shelf:
        shutil.copytree(self.catalog.root, root, ignore=shutil.ignore_patterns(".lock"))
        keys_root.mkdir(parents=True, exist_ok=True)
        for key in self.catalog.keys_root.glob("*.pub"):
            shutil.copy2(key, keys_root / key.name)
        return Shelf(Catalog(root, keys_root), self.signer, cache, self.versions)

    def ask(self, package: str = "openssl", **kw: Any) -> query.Answer:
        kw.setdefault("now", now_utc())
        return query.query(self.catalog, self.cache, package, **kw)

    def manifest(self, image: str, index: int) -> Path:
        return self.catalog.root / "manifests" / image / f"{self.versions[image][index]}.json"


@pytest.fixture(scope="session")
def shelf_template(tmp_path_factory: pytest.TempPathFactory, session_key: KeyPair) -> Shelf:
    root = tmp_path_factory.mktemp("shelf")
    return Shelf.build(
        Catalog(root / "catalog", session_key.public.parent), session_key.signer, root / "cache"
    )


@pytest.fixture
def shelf(shelf_template: Shelf, tmp_path: Path, keys_root: Path) -> Shelf:
    """A copy at ``layout.catalog`` (trusted through ``layout.keys``), its cache at ``layout.cache``."""
    return shelf_template.copy(tmp_path / "catalog", keys_root, tmp_path / "repo" / ".cache")


def _packages(answer: query.Answer) -> dict[tuple[str, str], str]:
    return {(h.image, h.version): h.package_version for h in answer.hits}


def _hit(answer: query.Answer, image: str, version: str) -> query.Hit:
    (found,) = [h for h in answer.hits if (h.image, h.version) == (image, version)]
    return found


# -- the answer ------------------------------------------------------------------------------


def test_every_version_is_listed_with_its_package_version(shelf: Shelf) -> None:
    expected = {("base", v): p for v, p in zip(shelf.versions["base"], BASE, strict=True)} | {
        ("nginx", v): p for v, p in zip(shelf.versions["nginx"], NGINX, strict=True)
    }
    assert _packages(shelf.ask()) == expected


def test_hits_are_by_image_newest_first(shelf: Shelf) -> None:
    order = [(h.image, h.version) for h in shelf.ask().hits]
    assert order == [("base", v) for v in reversed(shelf.versions["base"])] + [
        ("nginx", v) for v in reversed(shelf.versions["nginx"])
    ]


def test_versions_without_the_package_are_not_listed(shelf: Shelf) -> None:
    assert {h.image for h in shelf.ask("libedge").hits} == {"tools"}


@pytest.mark.parametrize(
    ("below", "expected"),
    [
        pytest.param("3.0", {"2.9-1", "3.0~rc1-1"}, id="tilde-sorts-before-the-release"),
        pytest.param("3.0-1", {"2.9-1", "3.0~rc1-1"}, id="release-is-not-below-itself"),
        pytest.param("3.0~rc1-1", {"2.9-1"}, id="rc-is-not-below-itself"),
        pytest.param(
            "3.0.15-1+deb12u2", {"2.9-1", "3.0~rc1-1", "3.0-1", "3.0.15-1+deb12u1"}, id="deb12u1-below-u2"
        ),
        pytest.param("3.0.15-1+deb12u1", {"2.9-1", "3.0~rc1-1", "3.0-1"}, id="revision-suffix-counts"),
        pytest.param("99", set(EDGE) - {"1:2.0-1"}, id="epoch-beats-any-upstream"),
        pytest.param("1:2.0-2", set(EDGE), id="epoch-1-compared-within-epoch"),
        pytest.param("2.9-1", set(), id="nothing-below-the-oldest"),
    ],
)
def test_below_uses_debian_ordering(shelf: Shelf, below: str, expected: set[str]) -> None:
    answer = shelf.ask("libedge", below=query.parse_below(below))
    assert {h.package_version for h in answer.hits} == expected


def test_below_keeps_versions_shipping_an_older_package(shelf: Shelf) -> None:
    answer = shelf.ask(below=query.parse_below("3.0.17-1~deb12u2"))
    assert {h.package_version for h in answer.hits} == {
        "3.0.11-1~deb12u2",
        "3.0.15-1~deb12u1",
        "3.0.16-1~deb12u1",
    }


def test_hit_names_the_channels_pointing_at_it(shelf: Shelf) -> None:
    assert _hit(shelf.ask(), "base", shelf.versions["base"][1]).channels == ("dev", "staging")


def test_channel_keeps_only_what_it_points_to(shelf: Shelf) -> None:
    assert _packages(shelf.ask(channel="staging")) == {("base", shelf.versions["base"][1]): BASE[1]}


def test_latest_channel_is_per_image(shelf: Shelf) -> None:
    hits = shelf.ask(channel="latest").hits
    assert {(h.image, h.version) for h in hits} == {
        ("base", shelf.versions["base"][-1]),
        ("nginx", shelf.versions["nginx"][-1]),
    }


def test_revoked_version_shows_its_state(shelf: Shelf) -> None:
    assert _hit(shelf.ask(), "base", shelf.versions["base"][0]).state == "revoked"


def test_good_version_is_active(shelf: Shelf) -> None:
    assert _hit(shelf.ask(), "base", shelf.versions["base"][2]).state == "active"


def test_scheduled_revocation_takes_effect_without_a_rebuild(shelf: Shelf) -> None:
    version = shelf.versions["nginx"][0]
    at = now_utc() + timedelta(days=1)
    with lifecycle.transaction(shelf.catalog, shelf.signer, ACTOR) as txn:
        lifecycle.revoke(txn, shelf.catalog, "nginx", version, reason="CVE-2026-0002", at=at)
    shelf.ask()  # indexed now, with the revocation still ahead
    assert _hit(shelf.ask(now=at + timedelta(seconds=1)), "nginx", version).state == "revoked"


def test_unknown_package_is_an_empty_answer(shelf: Shelf) -> None:
    assert shelf.ask("no-such-package").hits == ()


def test_unknown_package_suggests_similar_names(shelf: Shelf) -> None:
    assert "openssl" in shelf.ask("openssl3").similar


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "1.0 2", "x:1", "1.0_1", "1:"])
def test_invalid_below_names_the_field(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--below: "):
        query.parse_below(text)


def test_unknown_channel_names_the_field_and_the_channel() -> None:
    with pytest.raises(ConfigError, match=r"^--channel: unknown channel 'qa'"):
        query.check_channel("qa", ORDER)


def test_unknown_channel_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        query.check_channel("qa", ORDER)
    assert caught.value.hint is not None
    assert all(c in caught.value.hint for c in (*ORDER, "latest"))


@pytest.mark.parametrize("channel", [*ORDER, "latest", None])
def test_known_channels_are_accepted(channel: str | None) -> None:
    query.check_channel(channel, ORDER)


# -- the package index ---------------------------------------------------------------------


def _refresh(shelf: Shelf) -> query.Refresh:
    path = query.index_path(shelf.catalog, shelf.cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = query._open(path)
    try:
        return query.refresh(db, shelf.catalog)
    finally:
        db.close()


def test_first_query_reads_every_manifest(shelf: Shelf) -> None:
    assert _refresh(shelf) == query.Refresh(fresh=False, read=12, kept=0)


def test_second_query_reads_none(shelf: Shelf) -> None:
    shelf.ask()
    assert _refresh(shelf) == query.Refresh(fresh=True, read=0, kept=0)


def test_fresh_index_answers_without_the_manifests(shelf: Shelf) -> None:
    expected = _packages(shelf.ask())
    shutil.rmtree(shelf.catalog.root / "manifests")
    assert _packages(shelf.ask()) == expected


def test_new_publication_is_listed(shelf: Shelf) -> None:
    shelf.ask()
    version = publish(shelf.catalog, shelf.signer, "nginx", 100, {"openssl": "3.0.18-1~deb12u1"})
    assert _packages(shelf.ask())[("nginx", version)] == "3.0.18-1~deb12u1"


def test_new_publication_reads_only_its_manifest(shelf: Shelf) -> None:
    shelf.ask()
    publish(shelf.catalog, shelf.signer, "nginx", 100, {"openssl": "3.0.18-1~deb12u1"})
    assert _refresh(shelf) == query.Refresh(fresh=False, read=1, kept=12)


def test_promotion_is_seen(shelf: Shelf) -> None:
    shelf.ask()
    with lifecycle.transaction(shelf.catalog, shelf.signer, ACTOR) as txn:
        lifecycle.promote(
            txn, shelf.catalog, ORDER, image="nginx", version=shelf.versions["nginx"][0], channel="dev"
        )
    assert _hit(shelf.ask(), "nginx", shelf.versions["nginx"][0]).channels == ("dev",)


def test_damaged_index_file_is_rebuilt(shelf: Shelf) -> None:
    expected = _packages(shelf.ask())
    query.index_path(shelf.catalog, shelf.cache).write_bytes(b"not a database\n" * 100)
    assert _packages(shelf.ask()) == expected


def test_index_of_another_format_is_rebuilt(shelf: Shelf, monkeypatch: pytest.MonkeyPatch) -> None:
    shelf.ask()
    monkeypatch.setattr(query, "INDEX_FORMAT", query.INDEX_FORMAT + 1)
    assert _refresh(shelf).read == 12


# -- integrity -----------------------------------------------------------------------------


def _tamper(path: Path) -> None:
    data = json.loads(path.read_text())
    data["packages"] = [{"name": "openssl", "version": "9.9.9-1"}]
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_tampered_manifest_fails_the_index_build(shelf: Shelf) -> None:
    _tamper(shelf.manifest("base", 2))
    with pytest.raises(CatalogError, match="sha256 does not match"):
        shelf.ask()


def test_tampered_manifest_is_named(shelf: Shelf) -> None:
    _tamper(shelf.manifest("base", 2))
    with pytest.raises(CatalogError) as caught:
        shelf.ask()
    assert str(shelf.manifest("base", 2)) in caught.value.message


def test_manifest_tampered_after_indexing_does_not_change_the_answer(shelf: Shelf) -> None:
    shelf.ask()
    _tamper(shelf.manifest("base", 2))
    assert _hit(shelf.ask(), "base", shelf.versions["base"][2]).package_version == BASE[2]


def test_manifest_tampered_after_indexing_fails_the_next_rebuild(shelf: Shelf) -> None:
    shelf.ask()
    _tamper(shelf.manifest("base", 2))
    query.index_path(shelf.catalog, shelf.cache).unlink()
    with pytest.raises(CatalogError, match="sha256 does not match"):
        shelf.ask()


def test_edited_index_is_refused_although_indexed(shelf: Shelf) -> None:
    shelf.ask()
    root, version = shelf.catalog.root, shelf.versions["base"][0]

    def unrevoke(page: Any) -> None:  # un-revoke base[0] behind the signature's back
        for row in page["rows"]:
            if row["version"] == version:
                del row["state"]

    # re-hashed up to catalog.json (a new catalog.json: the package index is rebuilt), not re-signed
    tamper_v3.rechain(root, tamper_v3.page_of(root, "base", version), unrevoke)
    with pytest.raises(CatalogError, match=r"catalog\.json: envelope: signature does not verify"):
        shelf.ask()


def test_index_is_not_trusted_once_the_key_is_removed(shelf: Shelf) -> None:
    shelf.ask()
    for key in shelf.catalog.keys_root.glob("*.pub"):
        key.unlink()
    with pytest.raises(CatalogError, match="does not verify"):
        shelf.ask()


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
def run(layout: Layout, shelf: Shelf) -> Any:
    def call(*args: str) -> int:
        return main(["query", *args, "--root", str(layout.root), "--catalog", str(layout.catalog)])

    return call


def test_cli_json_is_a_list_of_hits(run: Any, shelf: Shelf, capsys: pytest.CaptureFixture[str]) -> None:
    run("--package", "openssl", "--channel", "staging", "--json")
    assert json.loads(capsys.readouterr().out) == [
        {
            "image": "base",
            "version": shelf.versions["base"][1],
            "created": shelf.catalog.find("base", shelf.versions["base"][1])["created"],
            "package": "openssl",
            "package_version": BASE[1],
            "state": "active",
            "collected": False,
            "channels": ["dev", "staging"],
        }
    ]


def test_cli_text_has_one_row_per_hit(run: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run("--package", "openssl")
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(BASE) + len(NGINX)


def test_cli_text_row(run: Any, shelf: Shelf, capsys: pytest.CaptureFixture[str]) -> None:
    run("--package", "openssl", "--channel", "dev")
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row == ["base", shelf.versions["base"][1], BASE[1], "active", "dev,", "staging"]


def test_cli_unknown_package_exits_0(run: Any) -> None:
    assert run("--package", "no-such-package", "--json") == 0


def test_cli_unknown_package_prints_an_empty_list(run: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run("--package", "no-such-package", "--json")
    assert json.loads(capsys.readouterr().out) == []


def test_cli_unknown_package_notes_it(run: Any, console: io.StringIO) -> None:
    run("--package", "no-such-package")
    assert "no published version ships a package named 'no-such-package'" in console.getvalue()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        pytest.param(["--below", "1.0 2"], "--below", id="below"),
        pytest.param(["--channel", "qa"], "--channel", id="channel"),
    ],
)
def test_cli_bad_argument_exits_2(run: Any, args: list[str], field: str) -> None:
    assert run("--package", "openssl", *args) == 2


@pytest.mark.parametrize(
    ("args", "field"),
    [
        pytest.param(["--below", "1.0 2"], "--below", id="below"),
        pytest.param(["--channel", "qa"], "--channel", id="channel"),
    ],
)
def test_cli_bad_argument_is_named(run: Any, console: io.StringIO, args: list[str], field: str) -> None:
    run("--package", "openssl", *args)
    assert f"error: {field}: " in console.getvalue()
