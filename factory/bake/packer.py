"""The Packer build stage.

python-packer composes Packer's command lines (``validate``, ``build``, ``-var``, ``-only``). It
normally executes them through the ``sh`` library, which would bypass the factory's one door to
subprocesses (its environment, logging and failure reports). ``_Door`` gives python-packer the
small part of ``sh.Command``'s interface it uses and hands the finished argv to
:func:`factory.core.run.run`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import packer

from factory.bake.render import Rendered
from factory.core.errors import ConfigError, ExternalToolError, FactoryError, ToolNotFound
from factory.core.run import Result, run, tool_path

PACKER = "packer"
# Plain output for logs and failure tails; no update check (there is no internet here).
PACKER_ENV = {"PACKER_NO_COLOR": "1", "CHECKPOINT_DISABLE": "1"}
# The standard AWS credential chain. base_env() strips them all; only an aws build's packer gets
# them, straight from the environment (never through a file or the template).
AWS_ENV_NAMES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_CA_BUNDLE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED",
)


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
        self,
        argv: tuple[str, ...],
        cwd: Path,
        ok_codes: tuple[int, ...],
        errors: list[FactoryError],
        env: Mapping[str, str] = PACKER_ENV,
    ) -> None:
        self._argv = argv
        self._cwd = cwd
        self._ok_codes = ok_codes
        # python-packer's validate() swallows every exception; the door keeps them to re-raise.
        self.errors = errors
        self._env = env

    def __getattr__(self, name: str) -> _Door:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Door((*self._argv, name), self._cwd, self._ok_codes, self.errors, self._env)

    def bake(self, *args: str, **_sh_options: Any) -> _Door:
        return _Door((*self._argv, *args), self._cwd, self._ok_codes, self.errors, self._env)

    def __call__(self, *args: str) -> _Outcome:
        try:
            result = run([*self._argv, *args], cwd=self._cwd, ok_codes=self._ok_codes, env=self._env)
        except FactoryError as exc:
            self.errors.append(exc)
            raise
        return _Outcome(result)


def client(
    template: Path,
    *,
    ok_codes: tuple[int, ...] = (0,),
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """A python-packer client whose commands run through the factory's door; ``env`` is added to
    :data:`PACKER_ENV` (for an aws build: the credentials of :func:`aws_env`)."""
    exe = shutil.which(PACKER, path=tool_path())
    if exe is None:
        raise ToolNotFound(PACKER)
    cli = packer.Packer(str(template), exec_path=exe, **kwargs)
    cli.packer = _Door((PACKER,), template.parent, ok_codes, [], {**PACKER_ENV, **(env or {})})
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
    """The docker artifact of the manifest's last run."""
    builder, artifact_id = _last_build(path)
    # podman's commit prints the bare hex id where Docker prints sha256:<hex>.
    if re.fullmatch(r"[0-9a-f]{64}", artifact_id):
        artifact_id = f"sha256:{artifact_id}"
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", artifact_id):
        raise ExternalToolError(f"{path}: artifact_id {artifact_id!r} is not an image id")
    return Artifact(type="podman-image", id=artifact_id, builder=builder)


@dataclass(frozen=True, kw_only=True)
class AmiArtifact:
    """An amazon-ebs artifact: the AMI in its build region."""

    region: str
    ami_id: str
    builder: str

    @property
    def id(self) -> str:
        """Packer's form, ``us-east-1:ami-0123abcd``."""
        return f"{self.region}:{self.ami_id}"


def aws_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The AWS credential chain variables of ``environ`` (default: this process's environment)."""
    source = os.environ if environ is None else environ
    return {name: source[name] for name in AWS_ENV_NAMES if name in source}


def build_ami(rendered: Rendered, *, env: Mapping[str, str] | None = None) -> AmiArtifact:
    """``packer build`` of an aws template, with the AWS credentials of ``env`` (default: this
    process's) passed to Packer only, then the AMI as the manifest post-processor recorded it."""
    rendered.packer_manifest.unlink(missing_ok=True)
    client(rendered.template, env=aws_env(env)).build(parallel=False)
    return read_ami_manifest(rendered.packer_manifest)


AMI_ARTIFACT_RE = re.compile(r"(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]):(?P<ami>ami-[0-9a-f]{8,17})")


def read_ami_manifest(path: Path) -> AmiArtifact:
    """The amazon-ebs artifact of the manifest's last run (one AMI: no ami_regions copies)."""
    builder, artifact_id = _last_build(path)
    if builder != "amazon-ebs":
        raise ExternalToolError(f"{path}: builder_type {builder!r} is not amazon-ebs")
    found = AMI_ARTIFACT_RE.fullmatch(artifact_id)
    if found is None:
        raise ExternalToolError(f"{path}: artifact_id {artifact_id!r} is not REGION:AMI-ID")
    return AmiArtifact(region=found["region"], ami_id=found["ami"], builder=builder)


def _last_build(path: Path) -> tuple[str, str]:
    """(builder_type, artifact_id) of the manifest's last run.

    Packer wrote it a moment ago, from our template: plain ``json``, not core.jsonio, but anything
    it could hold (RecursionError and int()'s digit limit included) is an ExternalToolError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        last = data["last_run_uuid"]
        found = next(b for b in data["builds"] if b["packer_run_uuid"] == last)
        return str(found["builder_type"]), str(found["artifact_id"])
    except (OSError, ValueError, KeyError, TypeError, StopIteration, RecursionError) as exc:
        raise ExternalToolError(
            f"{path}: packer build finished without a usable manifest ({exc})",
            hint="the manifest post-processor in factory/templates/ writes this file",
        ) from None
