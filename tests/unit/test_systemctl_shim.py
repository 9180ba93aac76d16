"""The systemctl stand-in common installs in build containers (roles/common/files/systemctl), run
in-process against a root of unit files under tmp_path: the symlinks `enable` makes from [Install],
the states it reports, and that Ansible's systemd module parses its `show`."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from ansible.modules.systemd_service import parse_systemctl_show  # type: ignore[import-untyped]

SHIM = Path(__file__).resolve().parents[2] / "roles" / "common" / "files" / "systemctl"

AGENT = """[Unit]
Description=agent
[Service]
ExecStart=/usr/sbin/agent
[Install]
WantedBy=multi-user.target
RequiredBy=network-online.target
Alias=agentd.service
Also=agent.socket
"""
SOCKET = "[Socket]\nListenStream=10050\n[Install]\nWantedBy=sockets.target\n"
TEMPLATE = "[Service]\nExecStart=/sbin/agetty %i\n[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n"
STATIC = "[Service]\nExecStart=/bin/true\n"


@pytest.fixture
def shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("factory_systemctl_shim", str(SHIM))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    units = tmp_path / "lib" / "systemd" / "system"
    units.mkdir(parents=True)
    for name, text in {"agent.service": AGENT, "agent.socket": SOCKET, "getty@.service": TEMPLATE,
                       "static.service": STATIC}.items():  # fmt: skip
        (units / name).write_text(text)
    (tmp_path / "run" / "factory-build-env").mkdir(parents=True)
    return module


def etc(root: Path, rel: str) -> Path:
    return root / "etc" / "systemd" / "system" / rel


@pytest.mark.parametrize(
    "link",
    [
        "multi-user.target.wants/agent.service",
        "network-online.target.requires/agent.service",
        "agentd.service",
        "sockets.target.wants/agent.socket",
    ],
)
def test_enable_links_what_install_names(shim: ModuleType, tmp_path: Path, link: str) -> None:
    assert shim.main(["enable", "agent"]) == 0
    unit = "agent.socket" if link.endswith(".socket") else "agent.service"
    assert str(etc(tmp_path, link).readlink()) == f"/lib/systemd/system/{unit}"


def test_enable_a_template_enables_its_default_instance(shim: ModuleType, tmp_path: Path) -> None:
    assert shim.main(["enable", "getty@.service"]) == 0
    assert str(etc(tmp_path, "getty.target.wants/getty@tty1.service").readlink()) == (
        "/lib/systemd/system/getty@.service"
    )


def test_enable_a_missing_unit_fails(shim: ModuleType) -> None:
    assert shim.main(["enable", "nothing"]) == 1


@pytest.mark.parametrize(
    ("commands", "state", "rc"),
    [
        ([], "disabled", 1),
        ([["enable", "agent"]], "enabled", 0),
        ([["enable", "agent"], ["disable", "agent"]], "disabled", 1),
        ([["mask", "agent"]], "masked", 1),
        ([["mask", "agent"], ["unmask", "agent"]], "disabled", 1),
    ],
)
def test_is_enabled_reports_the_unit_file_state(
    shim: ModuleType, capsys: pytest.CaptureFixture[str], commands: list[list[str]], state: str, rc: int
) -> None:
    for command in commands:
        shim.main(command)
    capsys.readouterr()
    assert shim.main(["is-enabled", "agent.service", "-l"]) == rc
    assert capsys.readouterr().out == f"{state}\n"


def test_a_unit_without_install_is_static(shim: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert shim.main(["is-enabled", "static"]) == 0
    assert capsys.readouterr().out == "static\n"


@pytest.mark.parametrize("verb", ["start", "stop", "restart", "reload", "daemon-reload"])
def test_service_actions_succeed_do_nothing_and_are_logged(
    shim: ModuleType, tmp_path: Path, verb: str
) -> None:
    before = sorted(p for p in tmp_path.rglob("*") if "factory-build-env" not in p.parts)
    assert shim.main(["--no-block", verb, "agent"]) == 0
    assert sorted(p for p in tmp_path.rglob("*") if "factory-build-env" not in p.parts) == before
    assert verb in (tmp_path / "run" / "factory-build-env" / "systemctl.log").read_text()


@pytest.mark.parametrize(("enabled", "active"), [(False, "inactive"), (True, "active")])
def test_show_parses_as_ansible_does(
    shim: ModuleType, capsys: pytest.CaptureFixture[str], enabled: bool, active: str
) -> None:
    """Enabled means active: the unit as it will be at first boot, so `state: started` is idempotent."""
    if enabled:
        shim.main(["enable", "agent"])
    capsys.readouterr()
    assert shim.main(["show", "agent"]) == 0
    status = parse_systemctl_show(capsys.readouterr().out.splitlines())
    assert (status["LoadState"], status["ActiveState"]) == ("loaded", active)


def test_show_of_a_missing_unit_says_not_found(shim: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert shim.main(["show", "nothing"]) == 0
    assert "LoadState=not-found" in capsys.readouterr().out.splitlines()


def test_user_scope_is_refused(shim: ModuleType) -> None:
    assert shim.main(["--user", "enable", "agent"]) == 1
