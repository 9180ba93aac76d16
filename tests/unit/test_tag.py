"""Version ids and image references."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from factory.core.errors import ConfigError
from factory.core.source import SourceState, check_version, image_ref, new_version, rejected_ref

COMMIT = "0123456789abcdef0123456789abcdef01234567"
NOW = datetime(2026, 11, 29, 8, 45, 12, tzinfo=UTC)


def _state(*, dirty: bool = False) -> SourceState:
    return SourceState(commit=COMMIT, dirty=dirty, source="https://git.example.invalid/image-factory.git")


def test_short_commit_is_12_characters() -> None:
    assert _state().short == "0123456789ab"


def test_new_version_format() -> None:
    assert new_version(_state(), NOW) == "20261129.084512-0123456789ab"


def test_new_version_carries_short_commit() -> None:
    assert new_version(_state(), NOW).endswith(f"-{COMMIT[:12]}")


def test_new_version_of_dirty_tree() -> None:
    assert new_version(_state(dirty=True), NOW) == "20261129.084512-0123456789ab-dirty"


def test_new_version_defaults_to_now() -> None:
    before = datetime.now(UTC).strftime("%Y%m%d.%H%M%S")
    version = new_version(_state())
    after = datetime.now(UTC).strftime("%Y%m%d.%H%M%S")
    assert before <= version.split("-")[0] <= after


def test_new_versions_sort_by_time() -> None:
    later = datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC)
    assert sorted([new_version(_state(), later), new_version(_state(), NOW)])[0] == new_version(
        _state(), NOW
    )


@pytest.mark.parametrize("dirty", [False, True])
def test_new_version_passes_check_version(dirty: bool) -> None:
    version = new_version(_state(dirty=dirty), NOW)
    assert check_version(version) == version


@pytest.mark.parametrize(
    "version",
    [
        "",
        "latest",
        "20261129-0123456789ab",
        "20261129.084512",
        "20261129.084512-0123456789AB",
        "20261129.084512-0123456789a",
        "20261129.084512-0123456789abc",
        "20261129.084512-0123456789ab-clean",
        "x20261129.084512-0123456789ab",
        "../20261129.084512-0123456789ab",
    ],
)
def test_check_version_refuses(version: str) -> None:
    with pytest.raises(ConfigError, match="not a factory version id"):
        check_version(version)


def test_check_version_refuses_trailing_newline() -> None:
    with pytest.raises(ConfigError):
        check_version("20261129.084512-0123456789ab\n")


def test_check_version_error_exits_2() -> None:
    with pytest.raises(ConfigError) as caught:
        check_version("latest")
    assert caught.value.exit_code == 2


def test_image_ref() -> None:
    assert (
        image_ref("nginx", "20261129.084512-0123456789ab") == "localhost/nginx:20261129.084512-0123456789ab"
    )


def test_rejected_ref() -> None:
    assert (
        rejected_ref("nginx", "20261129.084512-0123456789ab")
        == "localhost/nginx:20261129.084512-0123456789ab-rejected"
    )


def test_rejected_ref_differs_from_image_ref() -> None:
    assert rejected_ref("base", "v") != image_ref("base", "v")
