"""The host's apt sources, read to bootstrap the base from the same mirror."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from factory.bake import bootstrap
from factory.bake.bootstrap import AptSource, host_apt_sources, mirrors_for, sources_for_image
from factory.core.config import Bootstrap
from factory.core.errors import ConfigError

DEB822 = """\
# Debian mirrors of this host
Types: deb
URIs: http://deb.example.invalid/debian http://mirror2.example.invalid/debian
Suites: bookworm bookworm-updates
# URIs: http://commented.example.invalid/debian
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://security.example.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://disabled.example.invalid/debian
Suites: trixie
Components: main
Enabled: no

Types: deb-src
URIs: http://src.example.invalid/debian
Suites: bookworm
Components: main
"""

ONE_LINE = """\
deb [arch=amd64 signed-by=/usr/share/keyrings/extra.gpg] http://list.example.invalid/debian sid main non-free
# deb http://commented.example.invalid/debian bookworm main
deb-src http://list.example.invalid/debian sid main
"""

SOURCES_LIST = "deb http://plain.example.invalid/debian bullseye main  # the old mirror\n"


@pytest.fixture
def apt_dir(tmp_path: Path) -> Path:
    """An /etc/apt look-alike: sources.list plus a .list and a .sources file in sources.list.d/."""
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(SOURCES_LIST, encoding="utf-8")
    (tmp_path / "sources.list.d" / "extra.list").write_text(ONE_LINE, encoding="utf-8")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822, encoding="utf-8")
    return tmp_path


@pytest.fixture
def sources(apt_dir: Path) -> list[AptSource]:
    return host_apt_sources(apt_dir / "sources.list", apt_dir / "sources.list.d")


def _uris(sources: list[AptSource]) -> list[str]:
    return [s.uri for s in sources]


def test_every_enabled_deb_entry_is_found(sources: list[AptSource]) -> None:
    assert _uris(sources) == [
        "http://plain.example.invalid/debian",
        "http://list.example.invalid/debian",
        "http://deb.example.invalid/debian",
        "http://mirror2.example.invalid/debian",
        "http://security.example.invalid/debian-security",
    ]


def test_deb822_uri_gets_all_suites(sources: list[AptSource]) -> None:
    assert sources[2].suites == ("bookworm", "bookworm-updates")


def test_deb822_uri_gets_components(sources: list[AptSource]) -> None:
    assert sources[3].components == ("main", "contrib")


def test_deb822_disabled_stanza_is_ignored(sources: list[AptSource]) -> None:
    assert "http://disabled.example.invalid/debian" not in _uris(sources)


def test_deb822_deb_src_only_stanza_is_ignored(sources: list[AptSource]) -> None:
    assert "http://src.example.invalid/debian" not in _uris(sources)


def test_commented_lines_are_ignored(sources: list[AptSource]) -> None:
    assert "http://commented.example.invalid/debian" not in _uris(sources)


def test_one_line_options_are_dropped(sources: list[AptSource]) -> None:
    assert sources[1] == AptSource(
        uri="http://list.example.invalid/debian", suites=("sid",), components=("main", "non-free")
    )


def test_one_line_trailing_comment_is_dropped(sources: list[AptSource]) -> None:
    assert sources[0].components == ("main",)


def test_without_sources_dir_only_sources_list_is_read(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(SOURCES_LIST, encoding="utf-8")
    found = host_apt_sources(tmp_path / "sources.list", tmp_path / "absent.d")
    assert _uris(found) == ["http://plain.example.invalid/debian"]


def test_without_any_file_nothing_is_found(tmp_path: Path) -> None:
    assert host_apt_sources(tmp_path / "sources.list", tmp_path / "absent.d") == []


@pytest.mark.parametrize("value", ["No", "false"])
def test_deb822_disabled_spellings_are_ignored(tmp_path: Path, value: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.sources").write_text(
        "Types: deb\nURIs: http://off.example.invalid/debian\nSuites: trixie\nComponents: main\n"
        f"Enabled: {value}\n",
        encoding="utf-8",
    )
    assert host_apt_sources(tmp_path / "sources.list", tmp_path / "d") == []


# -- mirrors_for ---------------------------------------------------------------------------

MAIN = AptSource(
    uri="http://deb.example.invalid/debian", suites=("bookworm", "bookworm-updates"), components=()
)
SECURITY = AptSource(
    uri="http://security.example.invalid/debian-security", suites=("bookworm-security",), components=()
)


def test_mirrors_for_returns_main_and_security() -> None:
    assert mirrors_for("bookworm", [SECURITY, MAIN]) == (MAIN.uri, SECURITY.uri)


def test_mirrors_for_without_security() -> None:
    assert mirrors_for("bookworm", [MAIN]) == (MAIN.uri, None)


def test_mirrors_for_takes_the_first_match(sources: list[AptSource]) -> None:
    assert mirrors_for("bookworm", sources)[0] == "http://deb.example.invalid/debian"


def test_mirrors_for_does_not_take_security_as_main() -> None:
    with pytest.raises(ConfigError):
        mirrors_for("bookworm", [SECURITY])


def test_mirrors_for_missing_suite_names_it() -> None:
    with pytest.raises(ConfigError, match="no apt source for suite 'trixie'"):
        mirrors_for("trixie", [MAIN, SECURITY])


def test_mirrors_for_missing_suite_exits_2() -> None:
    with pytest.raises(ConfigError) as caught:
        mirrors_for("trixie", [])
    assert caught.value.exit_code == 2


# -- sources_for_image ---------------------------------------------------------------------


def _read_back(tmp_path: Path, text: str) -> list[AptSource]:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "debian.sources").write_text(text, encoding="utf-8")
    return host_apt_sources(tmp_path / "sources.list", tmp_path / "d")


def test_image_sources_with_security(tmp_path: Path) -> None:
    text = sources_for_image("bookworm", MAIN.uri, SECURITY.uri)
    assert _read_back(tmp_path, text) == [
        AptSource(uri=MAIN.uri, suites=("bookworm", "bookworm-updates"), components=("main",)),
        AptSource(uri=SECURITY.uri, suites=("bookworm-security",), components=("main",)),
    ]


def test_image_sources_without_security(tmp_path: Path) -> None:
    text = sources_for_image("bookworm", MAIN.uri, None)
    assert _read_back(tmp_path, text) == [
        AptSource(uri=MAIN.uri, suites=("bookworm", "bookworm-updates"), components=("main",)),
    ]


@pytest.mark.parametrize("security", [SECURITY.uri, None])
def test_image_sources_are_signed(security: str | None) -> None:
    text = sources_for_image("bookworm", MAIN.uri, security)
    stanzas = text.split("\n\n")
    assert all("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in s for s in stanzas)


# -- one bootstrap for concurrent bakes ---------------------------------------------------------


class FakePodman:
    """`podman image exists/import/inspect` as ensure_base calls them, with a slow import: the
    window in which a second bake used to start its own debootstrap."""

    def __init__(self) -> None:
        self.imported = False
        self.imports = 0

    def __call__(self, argv: list[Any], **_: Any) -> subprocess.CompletedProcess[str]:
        verb = argv[1:3]
        if verb == ["image", "exists"]:
            return subprocess.CompletedProcess(argv, 0 if self.imported else 1, "", "")
        if verb[0] == "import":
            time.sleep(0.2)
            self.imports += 1
            self.imported = True
            return subprocess.CompletedProcess(argv, 0, "", "")
        return subprocess.CompletedProcess(argv, 0, "sha256:" + "0" * 64 + "\n", "")


def test_concurrent_bakes_bootstrap_and_import_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    podman = FakePodman()
    debootstraps: list[Path] = []

    def debootstrap(_boot: Bootstrap, _mirror: str, _security: str | None, tarball: Path) -> None:
        time.sleep(0.2)
        debootstraps.append(tarball)
        tarball.write_bytes(b"rootfs")

    monkeypatch.setattr(bootstrap, "run", podman)
    monkeypatch.setattr(bootstrap, "_plan", lambda _boot: ("localhost/bootstrap:k", "http://m", None, "k"))
    monkeypatch.setattr(bootstrap, "_debootstrap", debootstrap)
    with ThreadPoolExecutor(max_workers=3) as pool:
        bases = list(
            pool.map(lambda _: bootstrap.ensure_base(Bootstrap(suite="bookworm"), tmp_path), range(3))
        )
    assert (len(debootstraps), podman.imports, {b.ref for b in bases}) == (1, 1, {"localhost/bootstrap:k"})
