"""`atlas api` with another commit policy than the group commit, for bench/pg/ingest.py only.

    python -m bench.pg.percommit_api serial|parallel    (settings from ATLAS_* as `atlas api`)

- serial: the real GroupCommitter with at most one request per transaction (MAX_ROWS = 1): one
  commit, and one WAL flush, per request, one after another.
- parallel: each request enqueues in its own transaction on a thread of its own, as many at once
  as the store's pool has connections (ATLAS_DB_POOL_SIZE): PostgreSQL's own commit path, where
  concurrent commits share WAL flushes (the server's group commit), does the batching.

Everything else is the real API: the module attribute create_app reads is swapped before the
app is built, so routes, guards, metrics and the store are the ones `atlas api` runs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import atlas.api.app as app_module
import atlas.api.groupcommit as groupcommit
from atlas.api.groupcommit import GroupCommitter, Overloaded
from atlas.cli.common import settings_or_exit
from atlas.ops.processes import run_api
from atlas.store.models import EnqueueResult, NewItem


class ParallelCommitter(GroupCommitter):
    """One transaction per request, up to `threads` at once; no writer thread."""

    threads = 10

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="atlas-commit")

    def stop(self) -> None:
        self._executor.shutdown(wait=True)

    async def submit(self, items: Sequence[NewItem]) -> list[EnqueueResult]:
        with self._lock:
            if self._pending_rows + len(items) > self.max_pending_rows:
                raise Overloaded(f"{self._pending_rows} items are already waiting to be committed")
            self._pending_rows += len(items)
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.store.enqueue, items
            )
        finally:
            with self._lock:
                self._pending_rows -= len(items)
        self.commits += 1
        return results


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    settings = settings_or_exit()
    if mode == "serial":
        groupcommit.MAX_ROWS = 1
    elif mode == "parallel":
        ParallelCommitter.threads = settings.db_pool_size
        app_module.GroupCommitter = ParallelCommitter  # type: ignore[misc]
    else:
        print(f"usage: python -m bench.pg.percommit_api serial|parallel (got {mode!r})", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(run_api(settings))


if __name__ == "__main__":
    main()
