"""Verification: the Testinfra gate.

A container is started from the freshly built artifact, the image's Testinfra files run
against it over ``podman-nsenter://`` (``podman://`` through nsenter: factory.bake.gatehost),
and the JUnit XML is kept as evidence. The container is removed
afterwards whatever happens, Ctrl-C included. Once the gate passed, the same container gives the
package list and the sha256 of the configuration files `factory drift` later compares hosts with.
"""

from __future__ import annotations

import re
import secrets
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from factory.core import jsonio
from factory.core.config import CONTAINER_NETWORK, ImageSpec, Layout, lineage, load_images
from factory.core.errors import ConfigError, ExternalToolError, VerificationFailed
from factory.core.run import run

# ${db:Status-Abbrev} is "ii " for an installed package; a removed one whose configuration files
# remain ("rc") is still listed by dpkg-query -W and must not count as installed.
# ${source:Package} and ${source:Version} name the Debian source a binary was built from (openssl
# for libssl3): advisories and changelogs speak of sources, so manifests record them too.
DPKG_QUERY = (
    "dpkg-query",
    "-W",
    "-f",
    "${db:Status-Abbrev}\t${Package}\t${Version}\t${source:Package}\t${source:Version}\n",
)

# Configuration whose drift matters whatever the roles do: sshd, kernel parameters, sudo, login
# policy. A directory stands for the regular files directly in it.
TRACKED_PATHS = (
    "/etc/ssh/sshd_config",
    "/etc/ssh/sshd_config.d",
    "/etc/sysctl.conf",
    "/etc/sysctl.d",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/login.defs",
)
# Written by a role, yet different on every machine by design: sanitize empties machine-id so
# that each instance generates its own at first boot.
PER_MACHINE = frozenset({"/etc/machine-id"})
# Modules that write a file's content, and the argument naming the file (first one present).
WRITING_MODULES: Mapping[str, tuple[str, ...]] = {
    "template": ("dest",),
    "copy": ("dest",),
    "lineinfile": ("path", "dest"),
    "blockinfile": ("path", "dest"),
    "replace": ("path", "dest"),
}
_CHECKSUM_EACH = ("-exec", "sha256sum", "--", "{}", "+")
_SHA256_LINE = re.compile(r"^([0-9a-f]{64}) [ *](/.*)$")


@dataclass(frozen=True, kw_only=True)
class TestReport:
    passed: int
    failed: int
    skipped: int
    errors: int
    duration_s: float
    junit: Path
    failed_tests: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0 and self.passed > 0


@dataclass(frozen=True, kw_only=True)
class Verified:
    report: TestReport
    packages: tuple[tuple[str, str], ...]  # (name, version), sorted
    sources: tuple[tuple[str, str, str], ...] = ()  # (name, source, source version), sorted
    files: tuple[tuple[str, str], ...] = ()  # (path, sha256), sorted: what `factory drift` compares


@contextmanager
def container(artifact_id: str, command: tuple[str, ...], *, name_hint: str) -> Iterator[str]:
    """A running container of ``artifact_id``, removed on the way out."""
    name = f"factory-verify-{name_hint}-{secrets.token_hex(4)}"
    started = ["podman", "run", "--detach", CONTAINER_NETWORK, "--name", name, artifact_id, *command]
    run(started, capture=True)
    try:
        yield name
    finally:
        run(["podman", "rm", "--force", "--time", "0", name], capture=True, ok_codes=(0, 1, 125))


def installed_packages(
    container_name: str,
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str, str], ...]]:
    """(name, version) and (name, source, source version) of every installed package."""
    out = run(["podman", "exec", container_name, *DPKG_QUERY], capture=True).stdout
    return parse_packages(out), parse_sources(out)


def _installed_rows(out: str) -> list[list[str]]:
    rows = (line.split("\t") for line in out.splitlines())
    return [r for r in rows if len(r) in (3, 5) and r[0][1:2] == "i"]


def parse_packages(out: str) -> tuple[tuple[str, str], ...]:
    """``DPKG_QUERY``'s output as sorted (name, version) pairs of the installed packages (the
    source columns are optional: a host's older query may not ask for them)."""
    return tuple(sorted((r[1], r[2]) for r in _installed_rows(out)))


def parse_sources(out: str) -> tuple[tuple[str, str, str], ...]:
    """(name, source, source version) of the installed packages whose query gave the source."""
    return tuple(sorted((r[1], r[3] or r[1], r[4] or r[2]) for r in _installed_rows(out) if len(r) == 5))


def checksum_command(paths: Iterable[str]) -> tuple[str, ...]:
    """sha256 of each path that is a regular file and of the regular files directly in each path
    that is a directory. Missing paths are skipped (find then exits 1, naming them on stderr)."""
    return ("find", *sorted(set(paths)), "-maxdepth", "1", "-type", "f", *_CHECKSUM_EACH)


def parse_checksums(out: str) -> dict[str, str]:
    """sha256sum's output as {path: sha256}, per-machine files left out."""
    found = (_SHA256_LINE.match(line) for line in out.splitlines())
    return {m[2]: m[1] for m in found if m is not None and m[2] not in PER_MACHINE}


def recorded_files(container_name: str, paths: Iterable[str]) -> tuple[tuple[str, str], ...]:
    out = run(["podman", "exec", container_name, *checksum_command(paths)], capture=True, ok_codes=(0, 1))
    return tuple(sorted(parse_checksums(out.stdout).items()))


def tracked_paths(spec: ImageSpec, layout: Layout) -> tuple[str, ...]:
    """What the image's checksums cover: ``TRACKED_PATHS`` and every file its roles, and its
    parents' roles, write."""
    specs = {**load_images(layout), spec.name: spec}
    written = {
        path for name in lineage(specs, spec.name) for path in role_written_files(specs[name], layout)
    }
    return tuple(sorted({*TRACKED_PATHS, *written} - PER_MACHINE))


def role_written_files(spec: ImageSpec, layout: Layout) -> tuple[str, ...]:
    """The file each template/copy/lineinfile/blockinfile/replace task of the image's roles writes,
    with variables resolved as the build resolves them: role defaults, group_vars, image vars."""
    group_vars = _variables(layout.inventory / "group_vars" / "build.yml")
    image_vars: dict[str, Any] = {}
    for role in spec.roles:
        image_vars.update(role.vars)
    found: set[str] = set()
    for role in spec.roles:
        role_dir = role.path or layout.roles / role.name
        defaults = _variables(role_dir / "defaults" / "main.yml")
        context = {**defaults, **group_vars, **image_vars}
        for task_file in sorted((role_dir / "tasks").glob("*.yml")):
            for raw in written_paths(_yaml(task_file)):
                try:
                    found.add(_resolve(raw, context, where=task_file))
                except ConfigError:
                    if role.dep is None:
                        raise  # our roles must say where they write; a foreign role's facts-based
                    continue  # destination is left out of the drift list instead
    return tuple(sorted(found))


def written_paths(tasks: Any) -> Iterator[str]:
    """The raw (unrendered) destination of each file-writing task, blocks included."""
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict):
            continue
        for section in ("block", "rescue", "always"):
            yield from written_paths(task.get(section))
        for key, args in task.items():
            module = key.removeprefix("ansible.builtin.").removeprefix("ansible.legacy.")
            if module not in WRITING_MODULES:
                continue
            names = WRITING_MODULES[module]
            dest = next((args[n] for n in names if isinstance(args, dict) and n in args), None)
            if not isinstance(dest, str):
                raise ConfigError(
                    f"task {task.get('name', key)!r}: {key} without a {' or '.join(names)} argument",
                    hint="write module arguments as a mapping, not as a key=value string",
                )
            yield dest


def _resolve(raw: str, context: Mapping[str, Any], *, where: Path) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 -- paths, not HTML
    value = raw
    for _ in range(5):  # a default may itself refer to other variables
        if "{{" not in value:
            break
        try:
            value = env.from_string(value).render(context)
        except jinja2.TemplateError as exc:
            raise ConfigError(
                f"{where}: cannot resolve the destination {raw!r}: {exc}",
                hint="`factory drift` records the files roles write; their paths must come from role "
                "defaults or image vars",
            ) from None
    if not value.startswith("/") or "{{" in value:
        raise ConfigError(f"{where}: destination {raw!r} does not resolve to an absolute path ({value!r})")
    return value


def _yaml(path: Path) -> Any:
    """The YAML document in ``path`` (through core.jsonio); None when the file is missing or empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return jsonio.load_yaml(raw, source=str(path))


def _variables(path: Path) -> dict[str, Any]:
    """A YAML file of variables (role defaults, group_vars): a mapping, or nothing."""
    data = _yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: a mapping of variables is expected, not {type(data).__name__}")
    return data or {}


# The gate loads the pytest plugins it names and no other: what else is installed beside pytest
# (xdist, hypothesis, ...) stays out of the verdict, and out of its start-up (0.56 against 0.14
# CPU-s for a one-test suite here).
GATE_PYTEST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def gate_pytest(
    tests: Iterable[str | Path],
    hosts: Iterable[str],
    *,
    junit: str | Path,
    image: str,
    version: str,
    commit: str,
) -> list[str]:
    """The gate's pytest command line (run with ``GATE_PYTEST_ENV``): Testinfra against ``hosts``
    (its connection options), the image's identity for gates/conftest.py, a JUnit report."""
    return [
        sys.executable,
        "-m",
        "pytest",
        *(str(test) for test in tests),
        "-p",
        "testinfra.plugin",
        *hosts,
        f"--junitxml={junit}",
        f"--image-name={image}",
        f"--image-version={version}",
        f"--image-commit={commit}",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-q",
    ]


def run_tests(
    spec: ImageSpec, layout: Layout, container_name: str, junit: Path, *, version: str, commit: str
) -> TestReport:
    """pytest + Testinfra against the container. Exit 1 means tests failed; other codes are tool errors."""
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    files = [layout.image_tests / test for test in spec.tests]
    started = time.monotonic()
    result = run(
        gate_pytest(
            files,
            ["-p", "factory.bake.gatehost", f"--hosts=podman-nsenter://{container_name}"],
            junit=junit,
            image=spec.name,
            version=version,
            commit=commit,
        ),
        cwd=layout.root,
        env=GATE_PYTEST_ENV,
        ok_codes=(0, 1),
    )
    duration = time.monotonic() - started
    if not junit.is_file():
        raise ExternalToolError(f"pytest wrote no JUnit report at {junit}", hint="run with --verbose")
    report = parse_junit(junit, duration)
    if result.returncode == 1 and report.ok:
        raise ExternalToolError("pytest exited 1 but its JUnit report shows no failure", hint=str(junit))
    return report


def parse_junit(path: Path, duration: float | None = None) -> TestReport:
    try:
        root = ET.parse(path).getroot()  # noqa: S314 -- written by our own pytest run
    except (ET.ParseError, OSError) as exc:
        raise ExternalToolError(f"{path}: unreadable JUnit report: {exc}") from None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    # Per test case, not the suite counters: pytest counts a test that fails and then errors in
    # teardown once in tests= but in both failures= and errors=.
    outcomes: dict[str, int] = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None:
            outcome = "failed"
        elif case.find("error") is not None:
            outcome = "errors"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        outcomes[outcome] += 1
        if outcome in ("failed", "errors"):
            failing.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    passed, failed, errors, skipped = (outcomes[k] for k in ("passed", "failed", "errors", "skipped"))
    return TestReport(
        passed=passed,
        failed=failed,
        skipped=skipped,
        errors=errors,
        duration_s=round(
            duration if duration is not None else sum(float(s.get("time", 0)) for s in suites), 3
        ),
        junit=path,
        failed_tests=tuple(failing),
    )


def verify(
    spec: ImageSpec, layout: Layout, artifact_id: str, junit: Path, *, version: str, commit: str
) -> Verified:
    """Run the gate; raise ``VerificationFailed`` naming the failing tests."""
    paths = tracked_paths(spec, layout)
    with container(artifact_id, spec.container.verification_cmd, name_hint=spec.name) as name:
        report = run_tests(spec, layout, name, junit, version=version, commit=commit)
        packages, sources = installed_packages(name) if report.ok else ((), ())
        files = recorded_files(name, paths) if report.ok else ()
    if not report.ok:
        listed = "\n".join(f"  FAILED {t}" for t in report.failed_tests) or "  (no test passed)"
        raise VerificationFailed(
            f"{spec.name} {version}: Testinfra gate failed: {report.failed} failed, {report.errors} errors, "
            f"{report.passed} passed\n{listed}",
            failed_tests=report.failed_tests,
            hint=f"nothing was published; the JUnit report is {junit}",
        )
    return Verified(report=report, packages=packages, sources=sources, files=files)
