"""The application on top of the library: the `robustclip` command, reproduction and export (never imported by it).

This file is written by hand (not exported from a notebook). Importing the package imports nothing else: each
name below is imported from its module on first use (`robustclip.core.lazy_exports`).
"""

from robustclip.core import lazy_exports

_PUBLIC = {
    # the command
    "main": "cli", "COMMANDS": "cli", "Command": "cli",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
