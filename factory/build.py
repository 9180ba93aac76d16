"""The Packer build stage.

python-packer composes Packer's command lines (``validate``, ``build``, ``-var``, ``-only``). It
normally executes them through the ``sh`` library, which would bypass the factory's one door to
subprocesses (its environment, logging and failure reports). ``_Door`` gives python-packer the
small part of ``sh.Command``'s interface it uses and hands the finished argv to
:func:`factory.run.run`.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import packer

from factory.errors import ConfigError, ExternalToolError, FactoryError, ToolNotFound
from factory.render import Rendered
from factory.run import Result, run, tool_path

PACKER = "packer"
# Plain output for logs and failure tails; no update check (there is no internet here).
PACKER_ENV = {"PACKER_NO_COLOR": "1", "CHECKPOINT_DISABLE": "1"}


class _Outcome:
    """What python-packer expects back from a command: ``exit_code``, ``stdout``, settable attributes."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.exit_code = result.returncode
        self.stdout = result.stdout
        # Set by python-packer's validate().
        self.succeeded = result.returncode == 0
        self.error: str | None = None


class _Door:
    """Just enough of ``sh.Command`` for python-packer: attribute = subcommand, ``bake``, call."""

    def __init__(
        self, argv: tuple[str, ...], cwd: Path, ok_codes: tuple[int, ...], errors: list[FactoryError]
    ) -> None:
        self._argv = argv
        self._cwd = cwd
        self._ok_codes = ok_codes
        # python-packer's validate() swallows every exception; the door keeps them to re-raise.
        self.errors = errors

    def __getattr__(self, name: str) -> _Door:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Door((*self._argv, name), self._cwd, self._ok_codes, self.errors)

    def bake(self, *args: str, **_sh_options: Any) -> _Door:
        return _Door((*self._argv, *args), self._cwd, self._ok_codes, self.errors)

    def __call__(self, *args: str) -> _Outcome:
        try:
            result = run([*self._argv, *args], cwd=self._cwd, ok_codes=self._ok_codes, env=PACKER_ENV)
        except FactoryError as exc:
            self.errors.append(exc)
            raise
        return _Outcome(result)


def client(template: Path, *, ok_codes: tuple[int, ...] = (0,), **kwargs: Any) -> Any:
    """A python-packer client whose commands run through the factory's door."""
    exe = shutil.which(PACKER, path=tool_path())
    if exe is None:
        raise ToolNotFound(PACKER)
    cli = packer.Packer(str(template), exec_path=exe, **kwargs)
    cli.packer = _Door((PACKER,), template.parent, ok_codes, [])
    return cli


def version() -> str:
    """Packer's version, e.g. ``1.6.6``."""
    out = run([PACKER, "version"], capture=True).stdout
    return out.strip().splitlines()[0].removeprefix("Packer v").strip()


def validate(rendered: Rendered) -> None:
    """``packer validate``; a rejected template is bad input (exit 2), with Packer's words."""
    cli = client(rendered.template, ok_codes=(0, 1))
    outcome = cli.validate()
    if cli.packer.errors:
        raise cli.packer.errors[0]
    if not isinstance(outcome, _Outcome):
        raise ExternalToolError(f"packer validate {rendered.template} failed: {outcome.error}")
    if not outcome.succeeded:
        raise ConfigError(
            f"{rendered.template}: packer validate rejected the rendered template:\n"
            + "\n".join(f"  {line}" for line in outcome.result.tail),
            hint="the template is rendered from factory/templates/ and the image definition",
        )


@dataclass(frozen=True, kw_only=True)
class Artifact:
    type: str
    id: str
    builder: str


def build(rendered: Rendered) -> Artifact:
    """``packer build``, then the artifact as the manifest post-processor recorded it."""
    rendered.packer_manifest.unlink(missing_ok=True)
    # Packer 1.6.6 rejects the -parallel=true that python-packer passes by default.
    client(rendered.template).build(parallel=False)
    return read_manifest(rendered.packer_manifest)


def read_manifest(path: Path) -> Artifact:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        last = data["last_run_uuid"]
        build = next(b for b in data["builds"] if b["packer_run_uuid"] == last)
        artifact_id = str(build["artifact_id"])
        builder = str(build["builder_type"])
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise ExternalToolError(
            f"{path}: packer build finished without a usable manifest ({exc})",
            hint="the manifest post-processor in factory/templates/ writes this file",
        ) from None
    # podman's commit prints the bare hex id where Docker prints sha256:<hex>.
    if re.fullmatch(r"[0-9a-f]{64}", artifact_id):
        artifact_id = f"sha256:{artifact_id}"
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", artifact_id):
        raise ExternalToolError(f"{path}: artifact_id {artifact_id!r} is not an image id")
    return Artifact(type="podman-image", id=artifact_id, builder=builder)
