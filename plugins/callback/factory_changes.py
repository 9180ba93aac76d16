"""Ansible callback: what each role changed in one run, written as JSON for the bake's idempotence
report (factory.bake.idempotence). Enabled only by the Packer template of an image that uses
external roles, with FACTORY_CHANGES_REPORT naming the file to write (on the build host)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ansible.plugins.callback import CallbackBase  # type: ignore[import-untyped]

DOCUMENTATION = """
    name: factory_changes
    type: aggregate
    short_description: per-role task counts and changed tasks, as JSON
    description:
      - Writes the file FACTORY_CHANGES_REPORT names when the playbook ends.
    requirements:
      - enabled with ANSIBLE_CALLBACKS_ENABLED=factory_changes
"""

PLAY = "(play)"  # tasks of the play itself, outside any role


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "factory_changes"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.roles: dict[str, dict[str, int]] = {}
        self.changed: list[dict[str, str]] = []

    def _count(self, result: Any, outcome: str) -> None:
        task = result._task
        role = task._role.get_name() if task._role is not None else PLAY
        counts = self.roles.setdefault(role, {"ok": 0, "changed": 0, "failed": 0, "skipped": 0})
        counts[outcome] += 1
        if outcome == "changed":
            self.changed.append({"role": role, "task": task.get_name(), "host": result._host.get_name()})

    def v2_runner_on_ok(self, result: Any) -> None:
        self._count(result, "changed" if result._result.get("changed", False) else "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._count(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._count(result, "skipped")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        target = os.environ.get("FACTORY_CHANGES_REPORT")
        if target:
            report = {"roles": self.roles, "changed_tasks": self.changed}
            Path(target).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
