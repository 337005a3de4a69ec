"""The API process's collector settings (atlas.ops.gctune), checked in a fresh interpreter: freezing
the heap is process-wide and would outlive the test in this one."""

from __future__ import annotations

import subprocess
import sys

from atlas.ops.gctune import YOUNG_THRESHOLD

CHECK = """
import gc
from atlas.ops.gctune import settle_heap
before = gc.get_threshold()
settle_heap()
after = gc.get_threshold()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()  # the imports' objects, frozen
print(before[1:] == after[1:], after[0])
"""


def test_settle_heap_freezes_start_up_objects_and_raises_only_the_young_threshold() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["True", str(YOUNG_THRESHOLD)]
