"""Entry point. The only place that catches errors and turns them into exit codes."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from factory.core.imports import absent

# jsonschema probes at import for the format libraries the dev extras install; parsing their
# grammars costs about 40 ms of every command's start. A command checks no format
# (factory.core.schemas), so here, and only here, they are answered "not installed" while the
# CLI loads (rfc3987_syntax is answered so everywhere: factory.core.schemas). Code that imports
# the factory without the CLI (the tests) keeps them.
with absent("rfc3986_validator", "isoduration"):
    from factory.cli.main import main_inner
    from factory.core import log
    from factory.core.errors import FactoryError
    from factory.core.text import safe

# 128 + SIGPIPE: what a coreutils tool's exit looks like when the reader of its output went away.
BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        code = main_inner(argv)
        sys.stdout.flush()  # inside the try: a reader that is gone is found out here, not at exit
        return code
    except BrokenPipeError:
        # `factory catalog | head`: stop quietly. Python would flush stdout again at exit and
        # complain; point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE
    except FactoryError as exc:
        if debug:
            sys.stderr.write(safe(traceback.format_exc()))
        log.error(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            sys.stderr.write(safe(traceback.format_exc()))
        log.console.print("Interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
