"""What a rebuild hands its child bakes: the same checkout and the same catalog."""

from __future__ import annotations

from pathlib import Path

from factory.core.config import Layout
from factory.loop.rebuild import child_command


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
