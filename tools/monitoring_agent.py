"""The seed's `python tools/monitoring_agent.py ...`: a shim onto `atlas monitor ...`.

python tools/monitoring_agent.py --check-health   ==   atlas monitor --check-health
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from atlas.cli.monitor import monitor

if __name__ == "__main__":
    monitor(prog_name="monitoring_agent.py")
