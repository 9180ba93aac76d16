"""The Packer stage: reading its manifest, and python-packer driven through factory.core.run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import factory.bake.packer
from factory.bake.packer import PACKER_ENV, Artifact, read_manifest
from factory.bake.render import Rendered
from factory.core.errors import ConfigError, ExternalToolError, ToolNotFound
from factory.core.run import Result

OLD_ID = "sha256:" + "1" * 64
NEW_HEX = "2" * 64


def _build(uuid: str, artifact_id: str) -> dict[str, Any]:
    return {
        "name": "docker",
        "builder_type": "docker",
        "build_time": 1764405912,
        "files": None,
        "artifact_id": artifact_id,
        "packer_run_uuid": uuid,
        "custom_data": {"image": "base"},
    }


def _write_manifest(path: Path, builds: list[dict[str, Any]], last: str) -> Path:
    path.write_text(json.dumps({"builds": builds, "last_run_uuid": last}), encoding="utf-8")
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """Two runs: an old one with a prefixed id, the last one with podman's bare hex id."""
    return _write_manifest(
        tmp_path / "packer-manifest.json", [_build("run-old", OLD_ID), _build("run-new", NEW_HEX)], "run-new"
    )


# -- read_manifest -------------------------------------------------------------------------


def test_read_manifest_picks_last_run(manifest: Path) -> None:
    assert read_manifest(manifest).id.endswith(NEW_HEX)


def test_read_manifest_prefixes_bare_hex_id(manifest: Path) -> None:
    assert read_manifest(manifest).id == f"sha256:{NEW_HEX}"


def test_read_manifest_result(manifest: Path) -> None:
    assert read_manifest(manifest) == Artifact(type="podman-image", id=f"sha256:{NEW_HEX}", builder="docker")


def test_read_manifest_selects_by_uuid_not_position(tmp_path: Path) -> None:
    path = _write_manifest(
        tmp_path / "m.json", [_build("run-new", NEW_HEX), _build("run-old", OLD_ID)], "run-old"
    )
    assert read_manifest(path).id == OLD_ID


def test_read_manifest_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExternalToolError, match="without a usable manifest"):
        read_manifest(tmp_path / "absent.json")


def test_read_manifest_missing_file_exits_4(tmp_path: Path) -> None:
    with pytest.raises(ExternalToolError) as caught:
        read_manifest(tmp_path / "absent.json")
    assert caught.value.exit_code == 4


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{", id="not-json"),
        pytest.param('{"builds": []}', id="no-last-run"),
        pytest.param(json.dumps({"builds": [_build("a", NEW_HEX)], "last_run_uuid": "b"}), id="no-such-run"),
        pytest.param(json.dumps({"builds": [_build("a", "not-an-id")], "last_run_uuid": "a"}), id="bad-id"),
    ],
)
def test_read_manifest_unusable(tmp_path: Path, text: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ExternalToolError):
        read_manifest(path)


# -- python-packer through the factory's door ----------------------------------------------


class FakeRun:
    """Stands in for factory.core.run.run: records each call, answers with a fixed exit code."""

    def __init__(self, returncode: int = 0, tail: tuple[str, ...] = ()) -> None:
        self.returncode = returncode
        self.tail = tail
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, cmd: Sequence[str], **kwargs: Any) -> Result:
        argv = [str(part) for part in cmd]
        self.calls.append((argv, kwargs))
        return Result(cmd=tuple(argv), returncode=self.returncode, stdout="", tail=self.tail)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "build" / "packer.json"
    path.parent.mkdir()
    path.write_text("{}\n", encoding="utf-8")
    return path


@pytest.fixture
def rendered(template: Path) -> Rendered:
    build_dir = template.parent
    return Rendered(
        build_dir=build_dir,
        template=template,
        template_sha256="0" * 64,
        playbook=build_dir / "playbook.yml",
        vars_file=build_dir / "vars.json",
        packer_manifest=build_dir / "packer-manifest.json",
    )


def _fake(monkeypatch: pytest.MonkeyPatch, returncode: int = 0, tail: tuple[str, ...] = ()) -> FakeRun:
    fake = FakeRun(returncode, tail)
    monkeypatch.setattr(factory.bake.packer, "run", fake)
    return fake


def test_build_argv_has_no_parallel_flag(monkeypatch: pytest.MonkeyPatch, template: Path) -> None:
    fake = _fake(monkeypatch)
    factory.bake.packer.client(template).build(parallel=False)
    assert fake.calls[0][0] == ["packer", "build", str(template)]


def test_build_runs_in_template_dir(monkeypatch: pytest.MonkeyPatch, template: Path) -> None:
    fake = _fake(monkeypatch)
    factory.bake.packer.client(template).build(parallel=False)
    assert fake.calls[0][1]["cwd"] == template.parent


def test_build_env_disables_colour_and_checkpoint(monkeypatch: pytest.MonkeyPatch, template: Path) -> None:
    fake = _fake(monkeypatch)
    factory.bake.packer.client(template).build(parallel=False)
    assert fake.calls[0][1]["env"] == PACKER_ENV


def test_client_passes_python_packer_options(monkeypatch: pytest.MonkeyPatch, template: Path) -> None:
    fake = _fake(monkeypatch)
    factory.bake.packer.client(template, only=["docker"], vars={"a": "1"}).build(parallel=False)
    assert fake.calls[0][0] == ["packer", "build", "-only=docker", "-var", "a=1", str(template)]


def test_one_call_per_command(monkeypatch: pytest.MonkeyPatch, template: Path) -> None:
    fake = _fake(monkeypatch)
    factory.bake.packer.client(template).build(parallel=False)
    assert len(fake.calls) == 1


def test_build_stage_returns_manifest_artifact(monkeypatch: pytest.MonkeyPatch, rendered: Rendered) -> None:
    def packer(cmd: Sequence[str], **kwargs: Any) -> Result:
        _write_manifest(rendered.packer_manifest, [_build("r", NEW_HEX)], "r")
        return Result(cmd=tuple(cmd), returncode=0, stdout="", tail=())

    monkeypatch.setattr(factory.bake.packer, "run", packer)
    assert factory.bake.packer.build(rendered).id == f"sha256:{NEW_HEX}"


def test_build_stage_ignores_stale_manifest(monkeypatch: pytest.MonkeyPatch, rendered: Rendered) -> None:
    _write_manifest(rendered.packer_manifest, [_build("old", OLD_ID)], "old")
    _fake(monkeypatch)
    with pytest.raises(ExternalToolError):
        factory.bake.packer.build(rendered)


def test_validate_argv(monkeypatch: pytest.MonkeyPatch, rendered: Rendered) -> None:
    fake = _fake(monkeypatch)
    factory.bake.packer.validate(rendered)
    assert fake.calls[0][0] == ["packer", "validate", str(rendered.template)]


def test_validate_allows_exit_1(monkeypatch: pytest.MonkeyPatch, rendered: Rendered) -> None:
    fake = _fake(monkeypatch)
    factory.bake.packer.validate(rendered)
    assert tuple(fake.calls[0][1]["ok_codes"]) == (0, 1)


def test_rejected_template_is_a_config_error(monkeypatch: pytest.MonkeyPatch, rendered: Rendered) -> None:
    _fake(monkeypatch, returncode=1)
    with pytest.raises(ConfigError) as caught:
        factory.bake.packer.validate(rendered)
    assert caught.value.exit_code == 2


def test_rejected_template_error_quotes_packer(monkeypatch: pytest.MonkeyPatch, rendered: Rendered) -> None:
    _fake(monkeypatch, returncode=1, tail=("* unknown configuration key: 'pul'",))
    with pytest.raises(ConfigError, match="unknown configuration key: 'pul'"):
        factory.bake.packer.validate(rendered)


def test_validate_without_packer_is_tool_not_found(
    monkeypatch: pytest.MonkeyPatch, rendered: Rendered
) -> None:
    def missing(cmd: Sequence[str], **kwargs: Any) -> Result:
        raise ToolNotFound("packer")

    monkeypatch.setattr(factory.bake.packer, "run", missing)
    with pytest.raises(ToolNotFound):
        factory.bake.packer.validate(rendered)


def test_client_without_packer_on_path_is_tool_not_found(
    monkeypatch: pytest.MonkeyPatch, template: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(factory.bake.packer, "tool_path", lambda: str(tmp_path))
    with pytest.raises(ToolNotFound):
        factory.bake.packer.client(template)
