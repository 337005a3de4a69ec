"""Every setting is read by something: a knob that nothing reads promises what Atlas does not do.

A setting counts as read when its attribute (or a `Settings` property built on it, such as
`sqlite_path` for `data_dir`) is accessed in atlas/ or exporters/ outside the settings model and
its loader (atlas/settings.py, atlas/config/). The few settings whose only reader is the loader or
`config validate` are listed with the reason, and must stay read there.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from atlas.settings import Settings, setting_fields

ROOT = Path(__file__).resolve().parents[2]
MODEL = [ROOT / "atlas" / "settings.py", ROOT / "atlas" / "config"]

# field -> why reading it in atlas/config/ is its whole job
READ_BY_THE_LOADER = {
    "config_dir": "chooses the env and secrets files the loader reads",
    "alerting_file": "the alerting.yaml `atlas-ops config validate` checks",
    "monitoring_file": "the monitoring.yaml `atlas-ops config validate` checks",
}


def _sources(inside_model: bool) -> str:
    files = sorted([*(ROOT / "atlas").rglob("*.py"), *(ROOT / "exporters").rglob("*.py")])
    in_model = [f for f in files if any(f == m or m in f.parents for m in MODEL)]
    chosen = in_model if inside_model else [f for f in files if f not in in_model]
    return "\n".join(f.read_text(encoding="utf-8") for f in chosen)


def _accessors(name: str) -> set[str]:
    """The field and every Settings property whose body reads it."""
    found = {name}
    for attr, value in vars(Settings).items():
        getter = value.fget if isinstance(value, property) else None
        if getter is not None and re.search(rf"\bself\.{name}\b", inspect.getsource(getter)):
            found.add(attr)
    return found


def _read_in(source: str, name: str) -> bool:
    return any(re.search(rf"\.{a}\b", source) for a in _accessors(name))


def test_every_setting_is_read_outside_the_settings_model() -> None:
    outside = _sources(inside_model=False)
    unread = [
        f.metadata["env"]
        for f in setting_fields()
        if f.name not in READ_BY_THE_LOADER and not _read_in(outside, f.name)
    ]
    assert unread == [], f"settings nothing reads (wire them or remove them): {unread}"


def test_the_loader_only_settings_are_settings_and_read_by_the_loader() -> None:
    inside = _sources(inside_model=True)
    names = {f.name for f in setting_fields()}
    for name in READ_BY_THE_LOADER:
        assert name in names
        assert _read_in(inside, name), name


def test_the_check_sees_a_property_as_reading_its_field() -> None:
    assert _accessors("data_dir") >= {"data_dir", "sqlite_path", "key_file_path"}
