"""The golden image factory: render → build → verify → tag → publish."""

import sys

__version__ = "0.1.0"

# jsonschema imports rfc3987_syntax when it is installed (ansible-lint's extras bring it) to check
# the "iri" format, and building that grammar costs about 1 s of CPU at every start of every
# command. No factory schema uses a format check, so the module is kept out of this process.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
