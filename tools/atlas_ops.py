"""The seed's `python tools/atlas_ops.py ...`: a shim onto `atlas-ops ...`.

python tools/atlas_ops.py service status --all   ==   atlas-ops service status --all
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from atlas.cli.ops import ops

if __name__ == "__main__":
    ops(prog_name="atlas_ops.py")
