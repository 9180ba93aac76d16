"""Verification: the Testinfra gate.

A container is started from the freshly built artifact, the image's Testinfra files run
against it over ``podman://``, and the JUnit XML is kept as evidence. The container is removed
afterwards whatever happens, Ctrl-C included.
"""

from __future__ import annotations

import secrets
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from factory.config import ImageSpec, Layout
from factory.errors import ExternalToolError, VerificationFailed
from factory.run import run


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


@contextmanager
def container(artifact_id: str, command: tuple[str, ...], *, name_hint: str) -> Iterator[str]:
    """A running container of ``artifact_id``, removed on the way out."""
    name = f"factory-verify-{name_hint}-{secrets.token_hex(4)}"
    run(["podman", "run", "--detach", "--name", name, artifact_id, *command], capture=True)
    try:
        yield name
    finally:
        run(["podman", "rm", "--force", "--time", "0", name], capture=True, ok_codes=(0, 1, 125))


def installed_packages(container_name: str) -> tuple[tuple[str, str], ...]:
    out = run(
        ["podman", "exec", container_name, "dpkg-query", "-W", "-f", "${Package}\t${Version}\n"],
        capture=True,
    ).stdout
    pairs = (line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    return tuple(sorted((name, version) for name, version in pairs))


def run_tests(
    spec: ImageSpec, layout: Layout, container_name: str, junit: Path, *, version: str, commit: str
) -> TestReport:
    """pytest + Testinfra against the container. Exit 1 means tests failed; other codes are tool errors."""
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    files = [layout.image_tests / test for test in spec.tests]
    started = time.monotonic()
    result = run(
        [
            sys.executable,
            "-m",
            "pytest",
            *files,
            f"--hosts=podman://{container_name}",
            f"--junitxml={junit}",
            f"--image-name={spec.name}",
            f"--image-version={version}",
            f"--image-commit={commit}",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-q",
        ],
        cwd=layout.root,
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
    with container(artifact_id, spec.container.verification_cmd, name_hint=spec.name) as name:
        report = run_tests(spec, layout, name, junit, version=version, commit=commit)
        packages = installed_packages(name) if report.ok else ()
    if not report.ok:
        listed = "\n".join(f"  FAILED {t}" for t in report.failed_tests) or "  (no test passed)"
        raise VerificationFailed(
            f"{spec.name} {version}: Testinfra gate failed: {report.failed} failed, {report.errors} errors, "
            f"{report.passed} passed\n{listed}",
            failed_tests=report.failed_tests,
            hint=f"nothing was published; the JUnit report is {junit}",
        )
    return Verified(report=report, packages=packages)
