"""The Atlas error hierarchy.

    AtlasError                      root: every error Atlas raises on purpose
    ├── ConfigError                 a setting or config file is wrong (exit code 2 at the CLI)
    ├── StoreError                  the database failed; the driver's error is kept as __cause__
    │   ├── MigrationError          the schema could not be brought to the current version
    │   └── DatabaseNotReady        opened without migrating: missing, or not at this schema (exit 2)
    ├── PipelineError               the engine's pipeline cannot be imported or built (at start)
    ├── ItemError                   one item is invalid (names the field or item at fault)
    │   └── ItemNotFound            no item with that id
    ├── StageError                  a pipeline stage failed on an item (retryable unless said)
    │   └── PermanentStageError     retrying cannot help: the item goes to the DLQ at once
    └── Deferred                    not now (an open circuit, a politeness wait): run again at
                                    `until` without spending an attempt

Each class's docstring is its message template; the instance message quotes the bad value.
"""

from __future__ import annotations


class AtlasError(Exception):
    """Atlas failed."""


class ConfigError(AtlasError):
    """A setting or configuration file is invalid."""


class StoreError(AtlasError):
    """The store could not complete an operation."""


class MigrationError(StoreError):
    """The database schema could not be migrated."""


class DatabaseNotReady(StoreError):
    """The database is missing or not at this version's schema; nothing was created or migrated."""


class TransferRefused(AtlasError):
    """`database migrate --to` cannot start: a missing source, an unreachable or non-empty target."""


class PipelineError(AtlasError):
    """The engine's pipeline cannot be imported or built."""


class ItemError(AtlasError):
    """An item is invalid."""


class ItemNotFound(ItemError):
    """No item has this id."""


class StageError(AtlasError):
    """A pipeline stage failed on an item; the engine retries it with backoff."""

    def __init__(self, message: str, *, stage: str = "", host: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.host = host


class PermanentStageError(StageError):
    """A pipeline stage failed in a way no retry can fix; the item is dead-lettered at once."""


class Deferred(AtlasError):
    """A stage cannot run the item now; it is rescheduled without spending an attempt."""

    def __init__(self, message: str, *, until: float, stage: str = "", host: str | None = None) -> None:
        super().__init__(message)
        self.until = until
        self.stage = stage
        self.host = host
