"""Console output: timed steps, notes and warnings on stderr (stdout is for --json answers).

Every string shown here passes the output rule (factory.core.text.safe: no control characters,
no bidi overrides) and then rich's markup escape, so a message can neither drive the terminal
nor style itself. No line is folded at the console's width: off a terminal (a CI log, a pipe) rich
would fold at 80 columns, through the middle of a path or a digest that someone greps for."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from factory.core.text import safe

console = Console(stderr=True, highlight=False)
_verbose = False


def set_verbose(value: bool) -> None:
    global _verbose  # noqa: PLW0603 -- one switch, set once by the CLI
    _verbose = value


def verbose() -> bool:
    return _verbose


def note(message: str) -> None:
    _line(safe(message), markup=False)


def error(message: str, hint: str | None = None) -> None:
    _line(f"[red]error:[/red] {_escape(message)}")
    if hint:
        _line(f"[cyan]hint:[/cyan] {_escape(hint)}")


def warn(message: str) -> None:
    _line(f"[yellow]warning:[/yellow] {_escape(message)}")


def command(line: str) -> None:
    """A command about to run, as a line that can be pasted into a shell."""
    if _verbose:
        _line(f"[dim]+ {_escape(line)}[/dim]")


def output(line: str) -> None:
    """A line of a child's output; shown live with --verbose."""
    if _verbose:
        _line(f"[dim]  {_escape(line)}[/dim]")


@contextmanager
def step(title: str) -> Iterator[None]:
    """Announce a pipeline step, show a spinner while it runs and its time when it ends."""
    start = time.monotonic()
    if _verbose or not console.is_terminal:
        _line(f"[bold]▶ {_escape(title)}[/bold]")
        status = None
    else:
        status = console.status(_escape(title))
        status.start()
    try:
        yield
    except BaseException:
        if status is not None:
            status.stop()
        _line(f"[red]✗ {_escape(title)}[/red] ({time.monotonic() - start:.1f}s)")
        raise
    if status is not None:
        status.stop()
    _line(f"[green]✓[/green] {_escape(title)} ({time.monotonic() - start:.1f}s)")


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A summary table; in a CI log (no terminal) wide enough not to fold every cell. Cells are
    plain text (never markup), through the output rule."""
    renderable = Table(title=safe(title), title_justify="left")
    for column in columns:
        renderable.add_column(safe(column), overflow="fold")
    for row in rows:
        renderable.add_row(*(Text(safe(cell)) for cell in row))
    if console.is_terminal:
        console.print(renderable)
    else:
        Console(stderr=True, highlight=False, width=200).print(renderable)


def _line(text: str, *, markup: bool = True) -> None:
    console.print(text, markup=markup, soft_wrap=True)


def _escape(text: str) -> str:
    """Text from anywhere, made safe for a terminal and then for rich markup."""
    return escape(safe(text))
