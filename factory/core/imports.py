"""Imports that would pull in a heavy optional dependency the factory does not use.

Some libraries probe at import time for every optional package they could use: jsonschema for
rfc3987_syntax (factory.core.schemas), securesystemslib for boto3 (factory.catalog.sslib). When
the package is installed the probe imports it, and every command pays for it at start-up. Inside
:func:`absent` such a probe is answered "not installed"; the module table is left as it was
afterwards, so code that does want the package (factory.core.awsapi imports boto3 when a command
talks to AWS) still gets it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def absent(*names: str) -> Iterator[None]:
    """``import <name>`` raises ImportError inside the block for each of ``names``, unless it was
    imported already."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # "import X" now raises ImportError
    try:
        yield
    finally:
        for name in blocked:
            del sys.modules[name]
