"""Schemathesis's `st` command, with AST building serialized across threads.

CPython 3.11 (before 3.12) keeps the AST converter's recursion depth in interpreter-wide state, so
two threads converting ASTs at once (ast.parse, or compile() of an AST) can fail with
"SystemError: AST constructor recursion depth mismatch" (CPython gh-106905). Hypothesis parses
source files to describe the lambdas schemathesis filters strategies with, from its worker threads:
without the lock a run now and then reports a tool error on a random operation.
Usage: python -m tests.helpers.schemathesis_cli ARGS (as `st ARGS`).
"""

from __future__ import annotations

import builtins
import sys
import threading
from typing import Any

_lock = threading.RLock()
_compile = builtins.compile


def _serialized_compile(*args: Any, **kwargs: Any) -> Any:
    with _lock:
        return _compile(*args, **kwargs)


if __name__ == "__main__":
    builtins.compile = _serialized_compile  # ast.parse calls compile() too
    from schemathesis.cli import schemathesis

    sys.argv[0] = "st"
    sys.exit(schemathesis())
