"""The seed's `python tools/config_cli.py ...`: a shim onto `atlas-ops config ...`.

python tools/config_cli.py validate --all   ==   atlas-ops config validate --all
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from atlas.cli.config import config

if __name__ == "__main__":
    config(prog_name="config_cli.py")
