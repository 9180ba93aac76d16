"""One error hierarchy. Each class owns its exit code; only ``__main__`` catches them.

Exit codes are part of the CLI contract (README): 0 ok, 2 bad input, 3 tests failed,
4 an external tool failed (nothing was recorded), 5 refused, 6 recorded in the catalog but a
follow-up (AWS SSM parameters, AMI deprecation) is pending.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class FactoryError(Exception):
    """An error the user can act on: a message, an optional hint, an exit code."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(FactoryError):
    """Bad input: an image definition, a catalog file, a CLI argument."""

    exit_code = 2


class DirtyTree(ConfigError):
    """The tree has uncommitted changes and the command would publish."""


class CatalogError(ConfigError):
    """The catalog on disk is unreadable, of the wrong schema, or inconsistent."""


class VerificationFailed(FactoryError):
    """The Testinfra gate rejected an artifact."""

    exit_code = 3

    def __init__(self, message: str, *, failed_tests: Sequence[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failed_tests = tuple(failed_tests)


class ExternalToolError(FactoryError):
    """An external tool (packer, podman, ansible, git, debootstrap) failed or is missing."""

    exit_code = 4


class ToolNotFound(ExternalToolError):
    def __init__(self, tool: str) -> None:
        super().__init__(
            f"{tool} not found in PATH",
            hint="run `make setup` (installs packer, podman, debootstrap and the venv)",
        )
        self.tool = tool


class CommandFailed(ExternalToolError):
    """A subprocess exited with a code it was not allowed to."""

    def __init__(self, cmd: Sequence[str], returncode: int, tail: Sequence[str]) -> None:
        self.cmd = tuple(cmd)
        self.returncode = returncode
        self.tail = tuple(tail)
        lines = [f"`{shlex.join(self.cmd)}` exited with code {returncode}"]
        if self.tail:
            lines.append(f"[{len(self.tail)} lines of output]")
            lines.extend(f"  {line}" for line in self.tail)
            lines.append("[end of output]")
        super().__init__(
            "\n".join(lines),
            hint="This error comes from a subprocess; the command above can be pasted to rerun it.",
        )


class FollowUpPending(FactoryError):
    """The catalog change was recorded; a target did not follow it (yet). Retrying the command
    would record it twice: the message names what to run instead."""

    exit_code = 6


class Refused(FactoryError):
    """The catalog answers, and the answer is no: a revoked, obsolete or empty target."""

    exit_code = 5
