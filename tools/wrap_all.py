"""The second half of `make export`: wrap the `__all__` that `nbdev-export` wrote to the lint rules' 120 columns.

nbdev wraps the list to 120 columns and then puts `__all__ = ` in front of its first line, which can so reach 130
columns; this rewrites each generated `__all__` as a bracketed block whose lines all fit in 120.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^__all__ = \[.*?\]\n", re.S | re.M)


def wrap_all(text: str) -> str:
    "The module text with its generated `__all__` block wrapped to 120 columns."

    def _wrap(m: re.Match) -> str:
        names = ast.literal_eval(m.group(0).split("=", 1)[1].strip())
        body = textwrap.fill(", ".join(repr(n) for n in names), width=116, break_long_words=False)
        return "__all__ = [\n" + textwrap.indent(body, "    ") + "\n]\n"

    return BLOCK.sub(_wrap, text, count=1)


def main(lib: Path = ROOT / "robustclip") -> int:
    "Wrap every module's `__all__` in place; prints how many modules changed."
    changed = 0
    for path in sorted(lib.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        new = wrap_all(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed += 1
    print(f"wrap_all: {changed} module(s) rewrapped")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "robustclip"))
