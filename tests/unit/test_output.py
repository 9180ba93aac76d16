"""The output rule (issue 16): text from outside reaches no terminal as control characters, rich
markup or a traceback; --json stays exact JSON; arguments that are not UTF-8 are refused."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from factory.__main__ import main
from factory.cli import common
from factory.core import log
from factory.core.text import safe
from tests.unit.conftest import Cli, World, catalog_files

# What no output may hold raw: C0 except newline and tab, DEL, C1, the line and paragraph
# separators, bidi embeddings/overrides/isolates, and lone surrogates.
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
HOSTILE = "x \x1b[2J\x1b]0;pwned\x07 \x9b31m \u202egnp.exe [red]red[/red]"


# -- safe() --------------------------------------------------------------------------------


@given(st.text())
def test_safe_leaves_no_dangerous_code_point(text: str) -> None:
    assert FORBIDDEN.search(safe(text)) is None


@given(st.text())
def test_safe_in_a_line_leaves_no_line_break(text: str) -> None:
    assert not {"\n", "\t"} & set(safe(text, newlines=False))


@given(st.text())
def test_safe_is_idempotent(text: str) -> None:
    assert safe(safe(text)) == safe(text)


@given(st.text())
def test_safe_output_encodes_as_utf8(text: str) -> None:
    safe(text).encode("utf-8")  # no lone surrogate left to raise UnicodeEncodeError


@given(st.text().filter(lambda t: FORBIDDEN.search(t) is None))
def test_safe_leaves_harmless_text_alone(text: str) -> None:
    assert safe(text) == text


@given(st.text().filter(lambda t: "\\" not in t))
def test_safe_keeps_every_harmless_character_in_order(text: str) -> None:
    # Lossless enough to read: without the escapes, the harmless characters are all there.
    assert re.sub(r"\\x[0-9a-f]{2}|\\u[0-9a-f]{4}", "", safe(text)) == FORBIDDEN.sub("", text)


@given(st.text().filter(lambda t: "\\" not in t))
def test_safe_can_be_read_back(text: str) -> None:
    # ... and every escape names the character it stands for.
    shown = re.sub(r"\\x([0-9a-f]{2})|\\u([0-9a-f]{4})", lambda m: chr(int(m[1] or m[2], 16)), safe(text))
    assert shown == text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b", r"\x1b"),
        ("\x07", r"\x07"),
        ("\r", r"\x0d"),
        ("\x00", r"\x00"),
        ("\x7f", r"\x7f"),
        ("\x9b", r"\x9b"),
        ("\u2028", r"\u2028"),
        ("\u202e", r"\u202e"),
        ("\u2066", r"\u2066"),
        ("\udcff", r"\udcff"),
        ("\n", "\n"),
        ("\t", "\t"),
        ("é ü 日本", "é ü 日本"),
    ],
)
def test_safe_shows(raw: str, shown: str) -> None:
    assert safe(raw) == shown


# -- the log and the printers --------------------------------------------------------------


@pytest.mark.parametrize(
    "say",
    [
        lambda: log.error(HOSTILE, HOSTILE),
        lambda: log.warn(HOSTILE),
        lambda: log.note(HOSTILE),
        lambda: log.table(HOSTILE, [HOSTILE], [[HOSTILE]]),
    ],
    ids=["error", "warn", "note", "table"],
)
def test_the_log_shows_no_control_character(
    console: io.StringIO, capsys: pytest.CaptureFixture[str], say: Any
) -> None:
    say()  # a table off a terminal goes to a wider console of its own, on stderr
    assert FORBIDDEN.search(console.getvalue() + capsys.readouterr().err) is None


@pytest.mark.parametrize(
    "say",
    [
        lambda: log.error(HOSTILE, HOSTILE),
        lambda: log.warn(HOSTILE),
        lambda: log.table("t", ["c"], [[HOSTILE]]),
    ],
    ids=["error", "warn", "table"],
)
def test_the_log_shows_markup_as_text(
    console: io.StringIO, capsys: pytest.CaptureFixture[str], say: Any
) -> None:
    say()
    assert "[red]red[/red]" in console.getvalue() + capsys.readouterr().err


def test_step_shows_no_control_character(console: io.StringIO) -> None:
    with log.step(HOSTILE):
        pass
    assert FORBIDDEN.search(console.getvalue()) is None


LONG = "/tmp/pytest-of-root/pytest-0/popen-gw0/cache/query/packages-2980b94f4505925d.sqlite: kept whole"


def _steps() -> None:
    with log.step(LONG):
        pass


@pytest.mark.parametrize(
    "say",
    [lambda: log.error(LONG, LONG), lambda: log.warn(LONG), lambda: log.note(LONG), _steps],
    ids=["error", "warn", "note", "step"],
)
def test_a_line_longer_than_the_console_is_not_folded(monkeypatch: pytest.MonkeyPatch, say: Any) -> None:
    # Off a terminal rich folds at its width (80 columns), which would break a path in a CI log.
    buffer = io.StringIO()
    monkeypatch.setattr(log, "console", Console(file=buffer, width=40, highlight=False, color_system=None))
    say()
    lines = buffer.getvalue().splitlines()
    assert lines and all(LONG in line for line in lines)


def test_out_shows_no_control_character(capsys: pytest.CaptureFixture[str]) -> None:
    common.out(HOSTILE)
    assert FORBIDDEN.search(capsys.readouterr().out) is None


@given(st.text())
def test_json_output_is_printable_ascii(text: str) -> None:
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", buffer)
        common.emit({"reason": text})
    assert re.fullmatch(r"[\n -~]*", buffer.getvalue())


@given(st.text())
def test_json_output_is_exact(text: str) -> None:
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", buffer)
        common.emit({"reason": text})
    assert json.loads(buffer.getvalue()) == {"reason": text}


# -- through the command line --------------------------------------------------------------


def _shown(capsys: pytest.CaptureFixture[str], console: io.StringIO) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err + console.getvalue()


@pytest.mark.parametrize("reader", [["history", "base"], ["catalog"], ["catalog", "base"]], ids=" ".join)
@pytest.mark.parametrize("option", ["--reason", "--actor"])
def test_a_hostile_revocation_reaches_no_terminal(
    cli: Cli, capsys: pytest.CaptureFixture[str], console: io.StringIO, option: str, reader: list[str]
) -> None:
    values = {"--reason": "CVE", "--actor": "alice", option: HOSTILE}
    cli("revoke", "base", cli.world.base[3], *(x for kv in values.items() for x in kv))
    cli(*reader)
    shown = _shown(capsys, console)
    assert FORBIDDEN.search(shown) is None and "\x1b" not in shown and "\x07" not in shown


def test_a_hostile_reason_is_shown_escaped(
    cli: Cli, capsys: pytest.CaptureFixture[str], console: io.StringIO
) -> None:
    cli("revoke", "base", cli.world.base[3], "--reason", "a\nb \x1b[2J", "--actor", "alice")
    capsys.readouterr()
    cli("history", "base")
    assert r"(a\x0ab \x1b[2J)" in capsys.readouterr().out


@pytest.mark.parametrize("option", ["--reason", "--actor"])
def test_a_hostile_revocation_is_exact_in_json(
    cli: Cli, capsys: pytest.CaptureFixture[str], console: io.StringIO, option: str
) -> None:
    values = {"--reason": "CVE", "--actor": "alice", option: HOSTILE}
    cli("revoke", "base", cli.world.base[3], *(x for kv in values.items() for x in kv))
    capsys.readouterr()
    cli("history", "base", "--json")
    out = capsys.readouterr().out
    field = option.lstrip("-")
    revoked = [r[field] for r in json.loads(out) if r["action"] == "revoke"]
    assert (FORBIDDEN.search(out), revoked) == (None, [HOSTILE])


def _alert_file(tmp_path: Path, world: World) -> Path:
    path = tmp_path / "alert.json"
    alert = {
        "status": "firing",
        "labels": {
            "alertname": "High\x1b]0;pwned\x07Rate",
            "severity": "critical",
            "image": "base",
            "image_version": world.base[3],
        },
        "annotations": {"summary": "5xx \x1b[2J\u202e above 5%"},
        "fingerprint": "f00dfeed",
    }
    path.write_text(json.dumps({"version": "4", "status": "firing", "alerts": [alert]}))
    return path


@pytest.mark.parametrize(
    "reader", [[], ["history", "base"], ["catalog", "base"]], ids=lambda r: " ".join(r) or "signal"
)
def test_a_hostile_alert_reaches_no_terminal(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str], console: io.StringIO, reader: list[str]
) -> None:
    assert cli("signal", str(_alert_file(tmp_path, cli.world)), "--actor", "alertmanager") == 0
    if reader:
        cli(*reader)
    assert FORBIDDEN.search(_shown(capsys, console)) is None


def test_a_hostile_unknown_argument_reaches_no_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["list", "\x1b[2J\x1b]0;pwned\x07"])
    assert FORBIDDEN.search(capsys.readouterr().err) is None


# -- arguments that are not UTF-8 ----------------------------------------------------------

NOT_UTF8 = b"x\xff".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["revoke", "base", "{v}", "--reason", NOT_UTF8], "--reason"),
        (["revoke", "base", "{v}", "--reason", "CVE", "--actor", NOT_UTF8], "--actor"),
        (["revoke", NOT_UTF8, "{v}", "--reason", "CVE"], "IMAGE"),
        (["promote", "base", "{v}", "--to", NOT_UTF8], "--to"),
        (["history", "base", "--channel", NOT_UTF8], "--channel"),
        (["signal", NOT_UTF8], "FILE"),
        (["query", "--package", NOT_UTF8], "--package"),
    ],
    ids=["reason", "actor", "image", "to", "channel", "file", "package"],
)
def test_an_argument_that_is_not_utf8_exits_2_naming_it(
    cli: Cli, capsys: pytest.CaptureFixture[str], console: io.StringIO, argv: list[str], named: str
) -> None:
    before = catalog_files(cli.world.catalog)
    code = cli(*(a.replace("{v}", cli.world.base[3]) for a in argv))
    shown = _shown(capsys, console)
    assert (code, f"error: {named}: not valid UTF-8" in shown, "Traceback" in shown) == (2, True, False)
    assert catalog_files(cli.world.catalog) == before


def test_a_root_that_is_not_utf8_exits_2(tmp_path: Path, console: io.StringIO) -> None:
    assert main(["list", "--root", str(tmp_path / NOT_UTF8)]) == 2
    assert "--root: not valid UTF-8" in console.getvalue()
