"""The Testinfra gate's reading of JUnit reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.bake import verify
from factory.bake.verify import parse_junit
from factory.core.errors import ExternalToolError

SUITE = """\
<testsuite name="pytest" errors="1" failures="1" skipped="1" tests="6" time="1.25">
  <testcase classname="test_base" name="test_ok" time="0.1"/>
  <testcase classname="test_base" name="test_fails" time="0.1"><failure message="no">no</failure></testcase>
  <testcase classname="test_base" name="test_skipped" time="0"><skipped message="n/a"/></testcase>
  <testcase classname="test_nginx" name="test_errors" time="0"><error message="boom"/></testcase>
  <testcase classname="test_nginx" name="test_ok[80]" time="0.2"/>
  <testcase classname="test_nginx" name="test_ok[443]" time="0.2"/>
</testsuite>
"""
ROOTS = {"testsuite": SUITE, "testsuites": f"<testsuites>\n{SUITE}</testsuites>\n"}


@pytest.fixture(params=sorted(ROOTS))
def report(request: pytest.FixtureRequest, tmp_path: Path) -> verify.TestReport:
    path = tmp_path / "junit.xml"
    path.write_text(ROOTS[request.param], encoding="utf-8")
    return parse_junit(path)


def _parse(tmp_path: Path, text: str, duration: float | None = None) -> verify.TestReport:
    path = tmp_path / "junit.xml"
    path.write_text(text, encoding="utf-8")
    return parse_junit(path, duration)


def test_passed(report: verify.TestReport) -> None:
    assert report.passed == 3


def test_failed(report: verify.TestReport) -> None:
    assert report.failed == 1


def test_skipped(report: verify.TestReport) -> None:
    assert report.skipped == 1


def test_errors(report: verify.TestReport) -> None:
    assert report.errors == 1


def test_failed_tests_named_classname_and_name(report: verify.TestReport) -> None:
    assert report.failed_tests == ("test_base::test_fails", "test_nginx::test_errors")


def test_duration_from_suite_time(report: verify.TestReport) -> None:
    assert report.duration_s == 1.25


def test_report_with_failure_is_not_ok(report: verify.TestReport) -> None:
    assert not report.ok


def test_duration_given_wins(tmp_path: Path) -> None:
    assert _parse(tmp_path, SUITE, duration=2.00049).duration_s == 2.0


def test_junit_path_is_kept(tmp_path: Path) -> None:
    assert _parse(tmp_path, SUITE).junit == tmp_path / "junit.xml"


def test_suites_are_summed(tmp_path: Path) -> None:
    text = (
        '<testsuites><testsuite tests="2"><testcase classname="a" name="t1"/>'
        '<testcase classname="a" name="t2"/>'
        '</testsuite><testsuite tests="2"><testcase classname="b" name="t3"/>'
        '<testcase classname="b" name="t4"><skipped/></testcase></testsuite></testsuites>'
    )
    assert _parse(tmp_path, text).passed == 3


def test_all_passed_is_ok(tmp_path: Path) -> None:
    assert _parse(tmp_path, '<testsuite tests="2"><testcase classname="a" name="b"/></testsuite>').ok


@pytest.mark.parametrize("text", ["<testsuite", "not xml at all"])
def test_unreadable_report_is_external_tool_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ExternalToolError, match="unreadable JUnit report"):
        _parse(tmp_path, text)


def test_missing_report_is_external_tool_error(tmp_path: Path) -> None:
    with pytest.raises(ExternalToolError):
        parse_junit(tmp_path / "absent.xml")


@pytest.mark.parametrize(
    ("passed", "failed", "skipped", "errors", "ok"),
    [
        pytest.param(3, 0, 0, 0, True, id="passed"),
        pytest.param(3, 0, 2, 0, True, id="passed-and-skipped"),
        pytest.param(0, 0, 0, 0, False, id="nothing-ran"),
        pytest.param(0, 0, 4, 0, False, id="all-skipped"),
        pytest.param(3, 1, 0, 0, False, id="a-failure"),
        pytest.param(3, 0, 0, 1, False, id="an-error"),
    ],
)
def test_report_ok(passed: int, failed: int, skipped: int, errors: int, ok: bool) -> None:
    report = verify.TestReport(
        passed=passed,
        failed=failed,
        skipped=skipped,
        errors=errors,
        duration_s=1.0,
        junit=Path("junit.xml"),
        failed_tests=(),
    )
    assert report.ok is ok


def test_failure_plus_teardown_error_is_not_negative(tmp_path: Path) -> None:
    text = (
        '<testsuite tests="1" failures="1" errors="1" skipped="0">'
        '<testcase classname="a" name="b"><failure message="x"/></testcase>'
        '<testcase classname="a" name="b"><error message="teardown"/></testcase></testsuite>'
    )
    assert _parse(tmp_path, text).passed == 0


def test_the_gate_container_is_on_user_mode_networking(monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []
    monkeypatch.setattr(verify, "run", lambda argv, **_: commands.append(list(argv)))
    with verify.container("sha256:" + "a" * 64, ("sleep", "infinity"), name_hint="base"):
        pass
    started = [c for c in commands if c[:2] == ["podman", "run"]]
    assert len(started) == 1 and "--network=slirp4netns" in started[0]
