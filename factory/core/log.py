"""Console output: timed steps, notes and warnings on stderr (stdout is for --json answers)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, highlight=False)
_verbose = False


def set_verbose(value: bool) -> None:
    global _verbose  # noqa: PLW0603 -- one switch, set once by the CLI
    _verbose = value


def verbose() -> bool:
    return _verbose


def note(message: str) -> None:
    console.print(message, markup=False)


def error(message: str, hint: str | None = None) -> None:
    console.print(f"[red]error:[/red] {_escape(message)}", soft_wrap=True)
    if hint:
        console.print(f"[cyan]hint:[/cyan] {_escape(hint)}", soft_wrap=True)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {_escape(message)}")


def command(line: str) -> None:
    """A command about to run, as a line that can be pasted into a shell."""
    if _verbose:
        console.print(f"[dim]+ {_escape(line)}[/dim]", soft_wrap=True)


def output(line: str) -> None:
    """A line of a child's output; shown live with --verbose."""
    if _verbose:
        console.print(f"[dim]  {_escape(line)}[/dim]", soft_wrap=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """Announce a pipeline step, show a spinner while it runs and its time when it ends."""
    start = time.monotonic()
    if _verbose or not console.is_terminal:
        console.print(f"[bold]▶ {_escape(title)}[/bold]")
        status = None
    else:
        status = console.status(title)
        status.start()
    try:
        yield
    except BaseException:
        if status is not None:
            status.stop()
        console.print(f"[red]✗ {_escape(title)}[/red] ({time.monotonic() - start:.1f}s)")
        raise
    if status is not None:
        status.stop()
    console.print(f"[green]✓[/green] {_escape(title)} ({time.monotonic() - start:.1f}s)")


def table(renderable: Table) -> None:
    """A summary table; in a CI log (no terminal) wide enough not to fold every cell."""
    if console.is_terminal:
        console.print(renderable)
    else:
        Console(stderr=True, highlight=False, width=200).print(renderable)


def _escape(text: str) -> str:
    return text.replace("[", r"\[")
