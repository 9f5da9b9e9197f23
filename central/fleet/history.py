"""Config history of a node: every version with its author and time, a readable diff, and rollback.

A diff an operator can read says "camera omotesando-01, zone left-kerb, polygon changed", not "line 212 of a
JSON file". ``diff_configs`` flattens both configs into paths where list items that carry an ``id`` are named
by it (``cameras[omotesando-01].rules[no-stopping].min_dwell_s``), so reordering zones is not a change and a
renamed rule shows as one removal and one addition.

Rollback never rewrites history: it validates the old version's content again with today's rules (the node
software may have moved on) and stores it as the next version, marked ``rollback_of``, audited twice (the new
config, and the rollback with the version it restores). A node refuses versions not newer than the one it runs,
so re-publishing the old number would not work anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import audit
from central.db.models import NodeConfigRow
from central.fleet.configs import submit_config
from central.fleet.enrollment import FleetError

# Fields central fills in itself: a difference there is not something an operator did.
IGNORED: Final = frozenset({"config_version"})
MAX_VALUE_CHARS: Final = 200


@dataclass(frozen=True)
class Change:
    """One difference between two configs."""

    path: str
    kind: str  # added / removed / changed
    old: str | None
    new: str | None


@dataclass(frozen=True)
class HistoryEntry:
    version: int
    created_at: datetime
    created_by: str
    note: str | None
    rollback_of: int | None
    changes: list[Change]
    first: bool = False  # the node's first version: no diff, everything is new


def _flatten(value: Any, path: str, out: dict[str, Any], items: dict[str, dict[str, Any]]) -> None:
    if isinstance(value, dict):
        if not value and path:
            out[path] = {}
        for key, item in value.items():
            if not path and key in IGNORED:
                continue
            _flatten(item, f"{path}.{key}" if path else str(key), out, items)
    elif isinstance(value, list) and all(isinstance(v, dict) and "id" in v for v in value):
        for item in value:  # an empty list of zones/rules/... adds no path: its items say what changed
            items[f"{path}[{item['id']}]"] = item
            _flatten(item, f"{path}[{item['id']}]", out, items)
    else:
        out[path] = value


def _summary(item: dict[str, Any]) -> str:
    """A whole zone, line or rule in one line: its type and the fields that say what it is."""
    keys = ("type", "zone", "line", "source", "polygon", "points", "roi", "direction", "min_dwell_s")
    text = "; ".join(f"{k}={_show(item[k])}" for k in keys if item.get(k) is not None)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _show(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(p, list) and len(p) == 2 for p in value):
        text = " ".join(f"({_num(p[0])}, {_num(p[1])})" for p in value)  # a polygon or a line
    else:
        text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _num(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def diff_configs(old: dict[str, Any] | None, new: dict[str, Any]) -> list[Change]:
    """What changed from ``old`` to ``new`` (``old`` None: the first version, everything is added)."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    items_before: dict[str, dict[str, Any]] = {}
    items_after: dict[str, dict[str, Any]] = {}
    if old is not None:
        _flatten(old, "", before, items_before)
    _flatten(new, "", after, items_after)
    # A zone, line or rule added or removed as a whole is one change, not one per field.
    whole: dict[str, tuple[str, str | None, str | None]] = {
        p: ("added", None, _summary(i)) for p, i in items_after.items() if p not in items_before
    }
    whole |= {p: ("removed", _summary(i), None) for p, i in items_before.items() if p not in items_after}
    changes = [Change(p, kind, o, n) for p, (kind, o, n) in whole.items() if not _inside(p, whole)]
    for path in sorted(before.keys() | after.keys()):
        if _inside(path, whole) or path in whole:
            continue
        if path not in before:
            changes.append(Change(path, "added", None, _show(after[path])))
        elif path not in after:
            changes.append(Change(path, "removed", _show(before[path]), None))
        elif before[path] != after[path]:
            changes.append(Change(path, "changed", _show(before[path]), _show(after[path])))
    return sorted(changes, key=lambda c: c.path)


def _inside(path: str, prefixes: dict[str, Any]) -> bool:
    return any(path.startswith(p + ".") or path.startswith(p + "[") for p in prefixes if p != path)


def history(session: Session, node_id: str, limit: int = 50) -> list[HistoryEntry]:
    """The newest ``limit`` versions, newest first, each with its diff against the version before it."""
    rows = session.scalars(
        select(NodeConfigRow)
        .where(NodeConfigRow.node_id == node_id)
        .order_by(NodeConfigRow.version.desc())
        .limit(limit + 1)
    ).all()
    entries = []
    for i, row in enumerate(rows[:limit]):
        previous = rows[i + 1].config if i + 1 < len(rows) else None
        first = previous is None and i + 1 == len(rows)
        entries.append(
            HistoryEntry(
                version=row.version,
                created_at=row.created_at,
                created_by=row.created_by,
                note=row.note,
                rollback_of=row.rollback_of,
                changes=[] if first else diff_configs(previous, row.config),
                first=first,
            )
        )
    return entries


def rollback(session: Session, node_id: str, version: int, *, username: str, now: datetime) -> NodeConfigRow:
    """Store version ``version``'s content as the node's next version; ``FleetError`` when it cannot be."""
    old = session.get(NodeConfigRow, (node_id, version))
    if old is None:
        raise FleetError(404, f"node {node_id} has no config version {version}")
    body = {k: v for k, v in old.config.items() if k != "config_version"}
    row = submit_config(session, node_id, body, username=username, now=now)
    row.rollback_of = version
    row.note = f"rollback to version {version}"
    audit.record(
        session,
        at=now,
        actor=username,
        action="node.config.rollback",
        target=f"node:{node_id}",
        details={"restores": version, "as_version": row.version},
    )
    return row
