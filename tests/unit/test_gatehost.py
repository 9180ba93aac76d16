"""The gate's door into the container (factory.bake.gatehost): nsenter into exactly what
``podman exec`` would give, or ``podman exec`` itself when nsenter cannot be used. The commands
themselves are not run here (unit tests start no process): the door is built from what
``podman container inspect`` answers, which is faked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from testinfra.backend import get_backend_class

from factory.bake import gatehost
from factory.core.errors import CommandFailed
from factory.core.run import Result

RUNNING = {
    "State": {"Pid": 4242},
    "Config": {"Env": ["PATH=/usr/sbin:/usr/bin", "LANG=C.UTF-8", "X=50% off"]},
}


def _inspect(monkeypatch: pytest.MonkeyPatch, answer: object) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake(cmd: list[str], **_: Any) -> Result:
        calls.append(cmd)
        if isinstance(answer, Exception):
            raise answer
        return Result(cmd=tuple(cmd), returncode=0, stdout=json.dumps(answer), tail=())

    monkeypatch.setattr(gatehost, "run", fake)
    return calls


def test_the_scheme_is_registered_with_testinfra() -> None:
    assert get_backend_class(gatehost.SCHEME) is gatehost.NsenterBackend


def test_the_door_enters_the_running_containers_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    _inspect(monkeypatch, [RUNNING])
    door = gatehost._prefix("gate-1")
    assert door is not None
    assert door.startswith("nsenter --target 4242 --mount --uts --ipc --net --pid --root --wd ")


def test_the_door_gives_exactly_the_containers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _inspect(monkeypatch, [RUNNING])
    door = gatehost._prefix("gate-1") or ""
    assert door.endswith(" env -i PATH=/usr/sbin:/usr/bin LANG=C.UTF-8 'X=50% off'")


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param([{"State": {"Pid": 0}, "Config": {"Env": []}}], id="not-running"),
        pytest.param([], id="no-such-container"),
        pytest.param([{"State": {"Pid": "1"}, "Config": {}}], id="pid-not-a-number"),
        pytest.param([{"State": {"Pid": 7}, "Config": {"Env": [1]}}], id="env-not-strings"),
        pytest.param(CommandFailed(("podman",), 125, ("Error: no such container",)), id="podman-refused"),
    ],
)
def test_without_a_running_container_it_uses_podman_exec(
    monkeypatch: pytest.MonkeyPatch, answer: object
) -> None:
    _inspect(monkeypatch, answer)
    assert gatehost._prefix("gate-1") is None


def test_a_user_or_a_non_root_caller_uses_podman_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _inspect(monkeypatch, [RUNNING])
    assert gatehost.NsenterBackend("nobody@gate-1").door is None
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert gatehost.NsenterBackend("gate-1").door is None
    assert calls == []  # neither asked podman anything


def test_the_door_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _inspect(monkeypatch, [RUNNING])
    monkeypatch.setattr("os.geteuid", lambda: 0)
    backend = gatehost.NsenterBackend("gate-1")
    assert backend.door == backend.door is not None
    assert calls == [["podman", "container", "inspect", "gate-1"]]
