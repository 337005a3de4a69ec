"""Running `python tools/atlas_ops.py ...` (the seed's documented entry point) as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

SHIM = ROOT / "tools" / "atlas_ops.py"


def atlas_ops(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SHIM), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok_json(env: dict[str, str], *args: str, cwd: Path | None = None) -> Any:
    """Run a command with --format json; fail showing stderr unless it exits 0."""
    done = atlas_ops(env, *args, "--format", "json", cwd=cwd)
    assert done.returncode == 0, f"atlas_ops.py {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)
