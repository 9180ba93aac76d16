"""What a rebuild hands its child bakes: the same checkout and the same catalog."""

from __future__ import annotations

from pathlib import Path

from factory.core.config import Layout
from factory.loop.rebuild import SUMMARY_COLUMNS, Outcome, child_command, summary_rows


def _option(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_a_child_bake_publishes_to_the_local_catalog(tmp_path: Path) -> None:
    layout = Layout.discover(tmp_path, catalog=str(tmp_path / "cat"))
    assert _option(child_command(layout), "--catalog") == str((tmp_path / "cat").resolve())


def test_a_child_bake_publishes_to_the_s3_catalog_not_a_placeholder(tmp_path: Path) -> None:
    layout = Layout.discover(tmp_path, catalog="s3://golden/catalog", aws_endpoint="http://127.0.0.1:5000")
    assert _option(child_command(layout), "--catalog") == "s3://golden/catalog"


def test_a_child_bake_talks_to_the_same_aws_endpoint(tmp_path: Path) -> None:
    layout = Layout.discover(tmp_path, catalog="s3://golden/catalog", aws_endpoint="http://127.0.0.1:5000")
    assert _option(child_command(layout), "--endpoint-url") == "http://127.0.0.1:5000"


def test_without_an_endpoint_the_child_gets_none(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path, catalog_location=str(tmp_path / "cat"), cache=tmp_path / "cache")
    assert "--endpoint-url" not in child_command(layout)


def test_the_child_works_on_the_same_checkout(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path, catalog_location=str(tmp_path / "cat"), cache=tmp_path / "cache")
    assert _option(child_command(layout), "--root") == str(tmp_path)


def test_the_nightly_table_reports_fixes_and_the_median_time_to_fix() -> None:
    fixed = Outcome(image="base", status="built", detail="security-updates", version="v2", seconds=61.2,
                    cves_fixed=("CVE-2026-1234", "CVE-2026-1235"), fix_median_hours=26.5)  # fmt: skip
    untouched = Outcome(image="nginx", status="skipped", detail="nothing changed")
    rows = dict(zip(SUMMARY_COLUMNS, summary_rows([fixed])[0], strict=True))
    assert (rows["fixes"], rows["time to fix"]) == ("CVE-2026-1234, CVE-2026-1235", "26.5 h")
    assert dict(zip(SUMMARY_COLUMNS, summary_rows([untouched])[0], strict=True))["time to fix"] == "-"
