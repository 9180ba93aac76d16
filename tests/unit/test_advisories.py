"""Advisory feeds from files (factory/catalog/advisories.py, `factory advisories import`): OSV
records (single, or a zip like osv.dev's Debian all.zip) and the Debian Security Tracker JSON,
found by id and by every alias; malformed input exits 2 naming the file and the record."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from factory.__main__ import main
from factory.catalog import advisories
from factory.catalog.docs_types import Package
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.core.config import Layout
from factory.core.errors import ConfigError
from tests.unit.conftest import REPO_ROOT
from tests.unit.test_cves import _publish

FEEDS = REPO_ROOT / "tests" / "fixtures" / "advisories"


def _imported(tmp_path: Path, *names: str) -> Path:
    cache = tmp_path / "cache"
    for name in names:
        advisories.store(cache, advisories.read(FEEDS / name), file=name)
    return cache


def test_an_osv_dsa_names_its_cves_and_a_fix_per_release() -> None:
    (dsa,) = advisories.read(FEEDS / "DSA-5764-1.json")
    assert (dsa.id, dsa.aliases, dsa.fixes) == (
        "DSA-5764-1",
        ("CVE-2024-5535", "CVE-2024-6119"),
        (("openssl", "12", "3.0.14-1~deb12u2", "high"), ("openssl", "11", "1.1.1w-0+deb11u2", "high")),
    )


def test_osv_packages_of_other_ecosystems_are_left_out() -> None:
    (record,) = advisories.read(FEEDS / "CVE-2024-2511.json")
    assert record.fixes == (("openssl", "12", "3.0.13-1~deb12u1", "low"),)


def test_the_tracker_gives_resolved_releases_only() -> None:
    found = {a.id: a.fixes for a in advisories.read(FEEDS / "tracker.json")}
    assert found == {
        "CVE-2024-0727": (),  # fixed_version 0: never affected
        "CVE-2024-2398": (("curl", "12", "7.88.1-10+deb12u6", "medium"),),
        "CVE-2024-9143": (("openssl", "12", "3.0.15-1~deb12u1", "low"),),
    }


def test_a_zip_of_osv_records_is_read_record_by_record(tmp_path: Path) -> None:
    feed = tmp_path / "all.zip"
    with zipfile.ZipFile(feed, "w") as archive:
        for name in ("DSA-5764-1.json", "CVE-2024-2511.json"):
            archive.write(FEEDS / name, name)
    assert sorted(a.id for a in advisories.read(feed)) == ["DEBIAN-CVE-2024-2511", "DSA-5764-1"]


@pytest.mark.parametrize(
    ("name", "ids"),
    [
        pytest.param("CVE-2024-5535", ("DSA-5764-1",), id="a-dsa-by-a-cve-it-names"),
        pytest.param("DSA-5764-1", ("DSA-5764-1",), id="a-dsa-by-its-id"),
        pytest.param("CVE-2024-2511", ("DEBIAN-CVE-2024-2511",), id="a-record-by-its-alias"),
        pytest.param("DEBIAN-CVE-2024-2511", ("DEBIAN-CVE-2024-2511",), id="a-record-by-its-id"),
        pytest.param("CVE-2024-9143", ("CVE-2024-9143",), id="a-tracker-cve"),
        pytest.param("CVE-1999-0001", (), id="unknown"),
    ],
)
def test_an_advisory_is_found_by_id_and_by_every_alias(
    tmp_path: Path, name: str, ids: tuple[str, ...]
) -> None:
    cache = _imported(tmp_path, "DSA-5764-1.json", "CVE-2024-2511.json", "tracker.json")
    assert advisories.lookup(cache, name)[0] == ids


def test_importing_again_replaces_not_duplicates(tmp_path: Path) -> None:
    cache = _imported(tmp_path, "DSA-5764-1.json", "DSA-5764-1.json")
    assert len(advisories.lookup(cache, "CVE-2024-6119")[1]) == 2  # one per release


# -- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        pytest.param("bad-fixed.json", "record 'DSA-9999-1'", id="osv-bad-version"),
        pytest.param(
            "bad-tracker.json", "package 'openssl', record 'CVE-2024-9143'", id="tracker-bad-releases"
        ),
    ],
)
def test_a_malformed_record_names_the_file_and_record(name: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        advisories.read(FEEDS / name)
    assert str(FEEDS / name) in caught.value.message and words in caught.value.message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("{not json", "not an OSV record or Debian tracker JSON", id="not-json"),
        pytest.param('["DSA-1"]', "neither an OSV record", id="a-list"),
        pytest.param(
            '{"id": "DSA-1", "aliases": "CVE-2024-1"}', "field 'aliases': expected a list", id="aliases"
        ),
        pytest.param('{"id": "", "affected": []}', "field 'id': expected a non-empty string", id="empty-id"),
        pytest.param(
            '{"id": "DSA-1", "affected": [{"package": 3}]}', "affected[0].package: expected", id="pkg"
        ),
        pytest.param('{"openssl": {"CVE-1": 7}}', "record 'CVE-1': expected an object", id="tracker-record"),
    ],
)
def test_malformed_json_exits_2_naming_the_file(tmp_path: Path, text: str, words: str) -> None:
    feed = tmp_path / "feed.json"
    feed.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        advisories.read(feed)
    assert str(feed) in caught.value.message and words in caught.value.message


def test_a_malformed_record_in_a_zip_names_the_member(tmp_path: Path) -> None:
    feed = tmp_path / "all.zip"
    with zipfile.ZipFile(feed, "w") as archive:
        archive.write(FEEDS / "DSA-5764-1.json", "DSA-5764-1.json")
        archive.write(FEEDS / "bad-fixed.json", "DSA-9999-1.json")
    with pytest.raises(ConfigError, match=r"all\.zip: DSA-9999-1\.json: record 'DSA-9999-1'"):
        advisories.read(feed)


def test_the_cli_imports_nothing_from_a_malformed_file(
    layout: Layout, console: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["advisories", "import", str(FEEDS / "bad-fixed.json"), "--root", str(layout.root)])
    shown = console.getvalue()
    assert (code, "bad-fixed.json" in shown, "Traceback" in shown) == (2, True, False)
    assert not advisories.index_path(layout.cache).exists()


# -- query --cve with a feed -------------------------------------------------------------------


def _openssl(version: str) -> list[Package]:
    return [{"name": "libssl3", "version": version, "source": "openssl", "source_version": version}]


def test_query_cve_uses_the_feed_for_a_cve_no_changelog_named(
    layout: Layout, catalog: Catalog, signer: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _publish(catalog, signer, "base", 1, _openssl("3.0.11-1~deb12u2"))
    _publish(catalog, signer, "base", 2, _openssl("3.0.14-1~deb12u2"))
    argv = ["--root", str(layout.root), "--catalog", str(layout.catalog)]
    assert main(["advisories", "import", str(FEEDS / "DSA-5764-1.json"), *argv]) == 0
    capsys.readouterr()
    assert main(["query", "--cve", "CVE-2024-6119", "--json", *argv]) == 0
    found = json.loads(capsys.readouterr().out)
    # bookworm's fix (3.0.14-1~deb12u2), not bullseye's (1.1.1w), which every 3.0 is above
    assert [(e["version"], e["installed"], e["fixed_in"], e["urgency"]) for e in found] == [
        (old, "3.0.11-1~deb12u2", "3.0.14-1~deb12u2", "high")
    ]


# -- a feed directory named in factory.toml ([advisories] directory) ---------------------------


def _configured(root: Path, directory: str) -> Layout:
    settings = root / "factory.toml"
    settings.write_text(settings.read_text() + f'\n[advisories]\ndirectory = "{directory}"\n')
    return Layout.discover(root, catalog=str(root / "catalog"), cache=str(root / "cache"))


def _checkout(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "factory.toml").write_text((REPO_ROOT / "factory.toml").read_text())
    return root


def test_the_configured_directory_is_imported_once_per_content(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    feeds = root / "feeds"
    feeds.mkdir()
    (feeds / "dsa.json").write_bytes((FEEDS / "DSA-5764-1.json").read_bytes())
    (feeds / "notes.txt").write_text("not a feed")
    layout = _configured(root, "feeds")
    assert advisories.sync(layout) == ["dsa.json"]
    assert advisories.sync(layout) == []  # nothing new: nothing read again
    assert advisories.lookup(layout.cache, "CVE-2024-6119")[0] == ("DSA-5764-1",)
    (feeds / "dsa.json").write_bytes((FEEDS / "CVE-2024-2511.json").read_bytes())  # the mirror moved on
    assert advisories.sync(layout) == ["dsa.json"]
    assert advisories.lookup(layout.cache, "CVE-2024-2511")[1][0].fixed_in == "3.0.13-1~deb12u1"


def test_a_bad_file_in_the_directory_exits_2_naming_it_and_imports_nothing(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    (root / "feeds").mkdir()
    (root / "feeds" / "broken.json").write_bytes((FEEDS / "bad-fixed.json").read_bytes())
    layout = _configured(root, "feeds")
    with pytest.raises(ConfigError, match=r"broken\.json"):
        advisories.sync(layout)
    assert not advisories.index_path(layout.cache).exists()


def test_a_configured_directory_that_is_missing_names_the_setting(tmp_path: Path) -> None:
    layout = _configured(_checkout(tmp_path), "no-such-feeds")
    with pytest.raises(ConfigError, match=r"factory\.toml: advisories\.directory: .*no-such-feeds"):
        advisories.sync(layout)


def test_without_the_setting_nothing_is_read(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    assert advisories.sync(Layout.discover(root, catalog=str(root / "c"), cache=str(root / "k"))) == []
