"""Which CVEs a pending update fixes, from the candidate's changelog (factory/loop/changelog.py):
the range (installed, candidate] in Debian order, the payload the scan container sends, the
cache, and the fields a scan record gets (factory/loop/scan.py with_changelogs)."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from factory.catalog import advisories
from factory.loop import changelog, scan

# A changelog in the shape of bookworm-security's openssl: newest first; +debNuM and ~debNuM
# suffixes, an epoch on the oldest entry, one entry naming three CVEs, one naming none.
OPENSSL = """\
openssl (3.0.17-1~deb12u2) bookworm-security; urgency=high

  * Fix CVE-2025-9230 (out-of-bounds read in kek unwrap).
  * Fix CVE-2025-9232.

 -- Debian Security Team <team@security.debian.org>  Tue, 30 Sep 2025 20:00:00 +0000

openssl (3.0.17-1~deb12u1) bookworm; urgency=medium

  * Import 3.0.17.
    - CVE-2024-13176, CVE-2025-27587 and CVE-2024-9143 (timing side channel, ECDSA).

 -- Sebastian Andrzej Siewior <sebastian@breakpoint.cc>  Sat, 05 Jul 2025 10:00:00 +0200

openssl (3.0.15-1~deb12u1) bookworm; urgency=medium

  * Import 3.0.15; no security content in this entry.

 -- Sebastian Andrzej Siewior <sebastian@breakpoint.cc>  Sun, 08 Sep 2024 10:00:00 +0200

openssl (3.0.11-1~deb12u2+deb12u1) bookworm-security; urgency=low

  * CVE-2023-5678: excessive time in DH checks.

 -- Debian Security Team <team@security.debian.org>  Mon, 06 Nov 2023 12:00:00 +0000

openssl (1:0.9.8-1) unstable; urgency=emergency

  * CVE-2008-0166: predictable random numbers.

 -- Old Maintainer <old@example.org>  Tue, 13 May 2008 12:00:00 +0000
"""


@pytest.fixture(scope="module")
def entries() -> tuple[changelog.Entry, ...]:
    source, found = changelog.parse(OPENSSL)
    assert source == "openssl"
    return found


def _ids(fixes: Sequence[changelog.Fix]) -> list[str]:
    return [f.cve for f in fixes]


def test_an_entry_names_all_its_cves(entries: tuple[changelog.Entry, ...]) -> None:
    assert entries[1].cves == ("CVE-2024-13176", "CVE-2025-27587", "CVE-2024-9143")


def test_urgency_and_date_of_each_entry(entries: tuple[changelog.Entry, ...]) -> None:
    assert (entries[0].urgency, entries[0].date) == ("high", "2025-09-30T20:00:00+00:00")


def test_the_range_excludes_installed_and_includes_candidate(entries: tuple[changelog.Entry, ...]) -> None:
    fixes = changelog.fixes(entries, "3.0.17-1~deb12u1", "3.0.17-1~deb12u2")
    assert _ids(fixes) == ["CVE-2025-9230", "CVE-2025-9232"]


def test_several_entries_in_range_give_every_cve_with_its_own_fixed_in(
    entries: tuple[changelog.Entry, ...],
) -> None:
    fixes = changelog.fixes(entries, "3.0.15-1~deb12u1", "3.0.17-1~deb12u2")
    assert {f.cve: f.fixed_in for f in fixes} == {
        "CVE-2024-13176": "3.0.17-1~deb12u1",
        "CVE-2024-9143": "3.0.17-1~deb12u1",
        "CVE-2025-27587": "3.0.17-1~deb12u1",
        "CVE-2025-9230": "3.0.17-1~deb12u2",
        "CVE-2025-9232": "3.0.17-1~deb12u2",
    }


def test_tilde_sorts_before_the_release(entries: tuple[changelog.Entry, ...]) -> None:
    # 3.0.17-1~deb12u2 < 3.0.17-1: an installed 3.0.17-1 already has everything above
    assert changelog.fixes(entries, "3.0.17-1", "3.0.17-1~deb12u2") == ()


def test_plus_debnum_is_above_its_base(entries: tuple[changelog.Entry, ...]) -> None:
    # 3.0.11-1~deb12u2 < 3.0.11-1~deb12u2+deb12u1: the security upload is in range
    fixes = changelog.fixes(entries, "3.0.11-1~deb12u2", "3.0.11-1~deb12u2+deb12u1")
    assert [(f.cve, f.urgency) for f in fixes] == [("CVE-2023-5678", "low")]


def test_an_epoch_outranks_any_upstream_version(entries: tuple[changelog.Entry, ...]) -> None:
    # 1:0.9.8-1 is above every epoch-0 version, so it is never in a range that ends at 3.0.x
    assert "CVE-2008-0166" not in _ids(changelog.fixes(entries, "0.9.7-1", "3.0.17-1~deb12u2"))
    assert _ids(changelog.fixes(entries, "3.0.17-1~deb12u2", "1:0.9.8-1")) == ["CVE-2008-0166"]


def test_an_installed_version_missing_from_the_changelog_is_compared_not_looked_up(
    entries: tuple[changelog.Entry, ...],
) -> None:
    fixes = changelog.fixes(entries, "3.0.0-1~stale", "3.0.17-1~deb12u2")
    assert len(fixes) == 6 and "CVE-2023-5678" in _ids(fixes)


def test_a_new_package_fixes_nothing(entries: tuple[changelog.Entry, ...]) -> None:
    assert changelog.fixes(entries, None, "3.0.17-1~deb12u2") == ()


def test_the_urgency_of_an_update_is_the_highest_in_range(entries: tuple[changelog.Entry, ...]) -> None:
    span = changelog.in_range(entries, "3.0.11-1~deb12u2", "3.0.17-1~deb12u2")
    assert changelog.highest(e.urgency for e in span) == "high"


# -- the payload of the scan container ---------------------------------------------------------


def _payload(debs: Mapping[str, tuple[str, Mapping[str, str]]]) -> str:
    """What changelog.DOWNLOAD prints: package -> (control text, {doc dir: changelog text})."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for package, (control, logs) in debs.items():
            files = {f"./{package}/control": control.encode()}
            for docdir, text in logs.items():
                files[f"./{package}/usr/share/doc/{docdir}/changelog.Debian.gz"] = gzip.compress(
                    text.encode()
                )
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(raw.getvalue()).decode()


def _control(package: str, version: str, source: str = "") -> str:
    return f"Package: {package}\nVersion: {version}\n" + (f"Source: {source}\n" if source else "")


def test_a_package_with_its_own_changelog() -> None:
    (found,) = changelog.unpack(
        _payload({"openssl": (_control("openssl", "3.0.17-1~deb12u2"), {"openssl": OPENSSL})}), where="t"
    )
    assert (found.package, found.source, found.entries[0].version) == (
        "openssl",
        "openssl",
        "3.0.17-1~deb12u2",
    )


def test_a_changelog_in_another_packages_doc_dir_is_found() -> None:
    payload = _payload(
        {"libssl3": (_control("libssl3", "3.0.17-1~deb12u2", "openssl"), {"openssl": OPENSSL})}
    )
    (found,) = changelog.unpack(payload, where="t")
    assert (found.package, found.source, len(found.entries)) == ("libssl3", "openssl", 5)


def test_a_package_without_a_changelog_takes_its_sources_from_a_sibling() -> None:
    payload = _payload(
        {
            "libssl3": (_control("libssl3", "3.0.17-1~deb12u2", "openssl"), {"libssl3": OPENSSL}),
            "libssl-dev": (_control("libssl-dev", "3.0.17-1~deb12u2", "openssl"), {}),  # doc dir: a symlink
        }
    )
    found = {f.package: f for f in changelog.unpack(payload, where="t")}
    assert found["libssl-dev"].entries == found["libssl3"].entries


def test_a_source_field_with_a_version_names_the_source() -> None:
    payload = _payload(
        {
            "libssl3": (
                _control("libssl3", "3.0.17-1~deb12u2+b1", "openssl (3.0.17-1~deb12u2)"),
                {"x": OPENSSL},
            )
        }
    )
    assert changelog.unpack(payload, where="t")[0].source == "openssl"


def test_a_package_without_any_changelog_is_left_out_with_a_warning(console: io.StringIO) -> None:
    assert (
        changelog.unpack(_payload({"tzdata": (_control("tzdata", "2025b-0+deb12u1"), {})}), where="t") == []
    )
    assert "tzdata 2025b-0+deb12u1: no changelog.Debian.gz" in console.getvalue()


def test_a_damaged_payload_gives_no_cves_and_a_warning(console: io.StringIO) -> None:
    assert changelog.unpack("not base64 at all!", where="base 1") == []
    assert "base 1: the changelogs could not be read" in console.getvalue()


# -- the scan record fields and the cache ------------------------------------------------------

SIMULATION = (
    "Inst openssl [3.0.0-1~stale] (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])\n"
    "Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.12/stable [all])\n"
)


def test_security_updates_get_source_cves_and_urgency(tmp_path: Path) -> None:
    payload = _payload({"openssl": (_control("openssl", "3.0.17-1~deb12u2"), {"openssl": OPENSSL})})
    pending = scan.with_changelogs(scan.parse_simulation(SIMULATION), tmp_path, lambda wanted: payload)
    openssl, tzdata = pending
    assert (openssl.source, openssl.urgency, len(openssl.cves), tzdata.cves) == ("openssl", "high", 6, ())


def test_each_package_version_is_downloaded_once(tmp_path: Path) -> None:
    payload = _payload({"openssl": (_control("openssl", "3.0.17-1~deb12u2"), {"openssl": OPENSSL})})
    asked: list[list[str]] = []

    def download(wanted: Sequence[str]) -> str:
        asked.append(list(wanted))
        return payload

    first = scan.with_changelogs(scan.parse_simulation(SIMULATION), tmp_path, download)
    again = scan.with_changelogs(scan.parse_simulation(SIMULATION), tmp_path, download)
    assert (asked, first) == ([["openssl=3.0.17-1~deb12u2"]], again)


def test_the_record_and_the_plan_name_the_cves(tmp_path: Path) -> None:
    payload = _payload({"openssl": (_control("openssl", "3.0.17-1~deb12u2"), {"openssl": OPENSSL})})
    (openssl, _) = scan.with_changelogs(scan.parse_simulation(SIMULATION), tmp_path, lambda wanted: payload)
    shown = scan.describe(openssl.as_json())
    assert shown.startswith(
        "openssl 3.0.0-1~stale -> 3.0.17-1~deb12u2 (fixes CVE-2023-5678, "
    ) and shown.endswith("; urgency high)")


def test_an_imported_advisory_naming_a_cve_is_listed_with_the_update(tmp_path: Path) -> None:
    dsa = advisories.osv({"id": "DSA-6000-1", "upstream": ["CVE-2025-9230"], "affected": []}, where="t")
    advisories.store(tmp_path, [dsa], file="t")
    payload = _payload({"openssl": (_control("openssl", "3.0.17-1~deb12u2"), {"openssl": OPENSSL})})
    (openssl, _) = scan.with_changelogs(scan.parse_simulation(SIMULATION), tmp_path, lambda wanted: payload)
    assert openssl.as_json()["advisories"] == ["DSA-6000-1"]
