"""Text safe for a terminal or a page, with no import beyond `re`: the CLI's error boundary runs it on
every message and the portal on every value it renders (before HTML escaping), so a label with terminal
escapes or bidi overrides reads as what it is everywhere. A leaf, like errors.py: any layer may use it."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (CSI is \x9b), and the bidi overrides
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(value: object) -> str:
    """`value` as text safe for a terminal: control characters shown escaped, never interpreted."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
