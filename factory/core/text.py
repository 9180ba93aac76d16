"""The one output rule: text that came from outside (reasons, actors, alert fields, package names,
file contents, registry and AWS answers, catalog values) passes through ``safe()`` before a
terminal sees it.

What is replaced by a visible escape (``\\x1b``, ``\\u202e``), and why:

- C0 controls except newline and tab, DEL and C1 (U+0080-U+009F): ESC starts ANSI sequences (clear
  the screen, set the window title, OSC 8 links, OSC 52 clipboard writes); CR and BS overwrite what
  is already shown; C1 CSI (U+009B) and OSC (U+009D) are single-character ESC [ and ESC ].
- U+2028 and U+2029 (line and paragraph separators): shown as line breaks by some terminals and
  viewers, so one field could fake a line of its own.
- Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder
  what is shown ("Trojan Source", CVE-2021-42574), so a version or a reason could read as another.
- Lone surrogates (U+D800-U+DFFF): Python's stand-ins for bytes that were not UTF-8; writing them
  raises UnicodeEncodeError instead of printing.

Everything else, all printable Unicode included, is left alone: ``safe`` of ordinary text is that
text, and ``safe`` of its own output changes nothing (it only emits printable ASCII escapes).
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str, *, newlines: bool = True) -> str:
    """``text`` with every terminal-dangerous code point replaced by a visible escape.

    ``newlines=False`` escapes newline and tab too: for a field inside one line of output (a
    history reason, an actor), where a line break would forge a line of its own."""
    return (_UNSAFE if newlines else _UNSAFE_IN_LINE).sub(_escape, text)


def has_surrogates(text: str) -> bool:
    """True if ``text`` holds bytes that were not UTF-8 (surrogateescape'd by Python)."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)
