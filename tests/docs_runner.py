"""Run the shell examples of the documentation, doctest style.

The convention, for README.md and every page under docs/:

- an example is a fenced block whose info string starts with ``console``; further words are tags
  (``console bake``: the block needs a real bake, see tests/integration/test_docs.py);
- a line starting with ``$ `` is a command; a command line ending with ``\\`` goes on onto the
  next line, as in a shell;
- the lines after a command, up to the next ``$ `` or the end of the block, are its expected
  output: stdout and stderr together, as a terminal shows them;
- ``...`` in a line matches any run of text; a line that is only ``...`` matches any number of
  lines, none included (doctest's ELLIPSIS);
- a command that exits non-zero ends its output with the line ``[exit N]``.

The commands of one block run in one ``bash`` process (``set -o pipefail``), so shell variables
and ``cd`` carry from one command to the next, as in a terminal session. Trailing whitespace and
trailing blank lines are not compared.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

PROMPT = "$ "
ELLIPSIS = "..."
EXIT_RE = re.compile(r"^\[exit (\d+)\]$")
FENCE_RE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
# A command outside a console block would never be run: that is what ``stray_commands`` finds.
STRAY_RE = re.compile(r"^\s*(\$ |(\.venv/bin/)?factory\s)")


@dataclass(frozen=True, kw_only=True)
class Example:
    """One command of a block and what it must print."""

    command: str  # as bash reads it: continuation lines included
    expected: tuple[str, ...]
    exit_code: int
    line: int  # 1-based line of the ``$ `` in its file


@dataclass(frozen=True, kw_only=True)
class Block:
    """One ``console`` fenced block."""

    path: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    tags: frozenset[str]
    examples: tuple[Example, ...]

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one example printed and how it exited."""

    example: Example
    output: tuple[str, ...]
    exit_code: int | None  # None: the block stopped (timeout, shell exit) before this command ended

    @property
    def ok(self) -> bool:
        return self.exit_code == self.example.exit_code and output_matches(
            self.example.expected, self.output
        )


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """The output of a command run earlier in the same checkout (a fixture's bake), shown again
    instead of running the command a second time."""

    output: tuple[str, ...]
    exit_code: int


@dataclass(frozen=True)
class Fence:
    line: int  # 1-based
    info: str
    body: tuple[str, ...] = field(default_factory=tuple)


# -- parsing ---------------------------------------------------------------------------------


def fences(text: str) -> Iterator[Fence]:
    """Every fenced code block of a Markdown text, with its info string and its lines."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE_RE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, marker = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(marker[0] * len(marker)) and not stripped.strip(marker[0]):
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        yield Fence(line=i + 1, info=opening["info"].strip(), body=tuple(body))
        i = j + 1


def parse_block(path: str, fence: Fence) -> Block:
    """The examples of one ``console`` block; a block that does not start with a command is an error."""
    words = fence.info.split()
    examples: list[Example] = []
    command: list[str] = []
    start = 0
    output: list[str] = []

    def close() -> None:
        if not command:
            return
        expected = list(output)
        while expected and not expected[-1].strip():
            expected.pop()
        code = 0
        if expected and (found := EXIT_RE.match(expected[-1].strip())):
            code = int(found[1])
            expected.pop()
        examples.append(
            Example(command="\n".join(command), expected=tuple(expected), exit_code=code, line=start)
        )

    continued = False
    for offset, line in enumerate(fence.body, start=fence.line + 1):
        if continued:
            command.append(line)
            continued = line.endswith("\\")
        elif line.startswith(PROMPT) or line.rstrip() == PROMPT.strip():
            close()
            command, output, start = [line[len(PROMPT) :]], [], offset
            continued = line.endswith("\\")
        elif not command:
            if line.strip():
                raise ValueError(f"{path}:{offset}: a console block starts with a `$ ` command")
        else:
            output.append(line)
    close()
    if not examples:
        raise ValueError(f"{path}:{fence.line}: a console block without a `$ ` command")
    return Block(path=path, line=fence.line, tags=frozenset(words[1:]), examples=tuple(examples))


def documents(root: Path) -> list[Path]:
    """README.md, then every Markdown page under docs/, in name order."""
    found = [root / "README.md"] if (root / "README.md").is_file() else []
    return found + sorted((root / "docs").rglob("*.md"))


def collect(root: Path) -> list[Block]:
    """Every ``console`` block of the documentation, in reading order."""
    blocks: list[Block] = []
    for page in documents(root):
        rel = page.relative_to(root).as_posix()
        for fence in fences(page.read_text(encoding="utf-8")):
            words = fence.info.split()
            if words and words[0] == "console":
                blocks.append(parse_block(rel, fence))
    return blocks


def stray_commands(root: Path) -> list[str]:
    """``file:line`` of every command written in a fenced block that is not ``console``."""
    found: list[str] = []
    for page in documents(root):
        rel = page.relative_to(root).as_posix()
        for fence in fences(page.read_text(encoding="utf-8")):
            if fence.info.split()[:1] == ["console"]:
                continue
            found.extend(
                f"{rel}:{fence.line + 1 + n}: {line.strip()}"
                for n, line in enumerate(fence.body)
                if STRAY_RE.match(line)
            )
    return found


# -- matching --------------------------------------------------------------------------------


@cache
def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split(ELLIPSIS)), re.DOTALL)


def line_matches(expected: str, actual: str) -> bool:
    return _line_pattern(expected.rstrip()).fullmatch(actual.rstrip()) is not None


def output_matches(expected: Sequence[str], actual: Sequence[str]) -> bool:
    """Whether ``actual`` fits ``expected``, a line ``...`` standing for any number of lines."""
    want = _trim(expected)
    got = _trim(actual)
    memo: dict[tuple[int, int], bool] = {}

    def fits(i: int, j: int) -> bool:
        if (i, j) not in memo:
            if i == len(want):
                result = j == len(got)
            elif want[i].strip() == ELLIPSIS:
                result = fits(i + 1, j) or (j < len(got) and fits(i, j + 1))
            else:
                result = j < len(got) and line_matches(want[i], got[j]) and fits(i + 1, j + 1)
            memo[(i, j)] = result
        return memo[(i, j)]

    return fits(0, 0)


def _trim(lines: Sequence[str]) -> list[str]:
    out = [line.rstrip() for line in lines]
    while out and not out[-1]:
        out.pop()
    return out


# -- running ---------------------------------------------------------------------------------


def run_block(
    block: Block,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 300,
    recorded: Mapping[str, Recorded] | None = None,
) -> list[Outcome]:
    """Run the block's commands in order in one bash; one outcome per example.

    A command found in ``recorded`` is not run again: its recorded output and exit code stand in.
    """
    mark = f"__docs_runner_{secrets.token_hex(8)}__"
    recorded = recorded or {}
    replays = Path(tempfile.mkdtemp(prefix="docs-runner-"))  # outside the checkout: it stays clean
    parts = ["exec 2>&1", "set -o pipefail"]
    for n, example in enumerate(block.examples):
        if example.command in recorded:
            saved = replays / f"{n}.out"
            earlier = recorded[example.command]
            saved.write_text("".join(f"{line}\n" for line in earlier.output))
            parts.append(f"cat {shlex.quote(str(saved))}; (exit {earlier.exit_code})")
        else:
            parts.append(example.command)
        parts.append(f"printf '\\n{mark} %d\\n' \"$?\"")
    proc = subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-c", "\n".join(parts)],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # commands may start background jobs: they are ended with the block
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, _ = proc.communicate()
        out += f"\n[the block did not finish within {timeout:.0f}s]\n"
    finally:
        _kill_group(proc.pid)
        shutil.rmtree(replays, ignore_errors=True)
    return _outcomes(block, out, mark)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _outcomes(block: Block, out: str, mark: str) -> list[Outcome]:
    outcomes: list[Outcome] = []
    rest = out
    ended = re.compile(rf"\n{re.escape(mark)} (\d+)\n")
    for example in block.examples:
        found = ended.search(rest)
        if found is None:
            outcomes.append(Outcome(example=example, output=tuple(rest.splitlines()), exit_code=None))
            rest = ""
            continue
        outcomes.append(
            Outcome(
                example=example,
                output=tuple(rest[: found.start()].splitlines()),
                exit_code=int(found[1]),
            )
        )
        rest = rest[found.end() :]
    return outcomes


def report(block: Block, outcomes: Sequence[Outcome]) -> str:
    """What failed, example by example: the command, the expected and the actual output."""
    lines: list[str] = []
    for outcome in outcomes:
        if outcome.ok:
            continue
        example = outcome.example
        lines.append(f"{block.path}:{example.line}: $ {example.command}")
        if outcome.exit_code != example.exit_code:
            lines.append(f"  exit code: expected {example.exit_code}, got {outcome.exit_code}")
        got = _trim(outcome.output)
        if not output_matches(example.expected, got):
            lines.append("  output (- expected, + actual; `...` is a wildcard):")
            diff = difflib.unified_diff(list(_trim(example.expected)), got, lineterm="", n=2)
            lines.extend(f"    {line}" for line in list(diff)[2:])
        lines.append("")
    return "\n".join(lines)
