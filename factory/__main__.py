"""Entry point. The only place that catches errors and turns them into exit codes."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from factory.cli.main import main_inner
from factory.core import log
from factory.core.errors import FactoryError


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        return main_inner(argv)
    except FactoryError as exc:
        if debug:
            traceback.print_exc()
        log.error(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        log.console.print("Interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
