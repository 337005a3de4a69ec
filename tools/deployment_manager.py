"""The seed's `python tools/deployment_manager.py ...`: a shim onto `atlas-ops ...` (atlas/cli/ops_deploy.py).

python tools/deployment_manager.py version list                == atlas-ops version list
python tools/deployment_manager.py deploy --version V --environment staging --strategy rolling
python tools/deployment_manager.py rollback --environment staging --target-version V
python tools/deployment_manager.py deployment status --environment staging
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from atlas.cli.ops import ops

if __name__ == "__main__":
    ops(prog_name="deployment_manager.py")
