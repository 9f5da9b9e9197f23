"""Cross-checks of one camera's config: every id a rule names exists and has what the rule needs."""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.rules.ruleconfig import RuleBase

_WHAT = {"zone": "zone", "directed_zone": "zone", "line": "line", "signal": "signal"}


def _unique(camera_id: str, what: str, ids: Sequence[str]) -> None:
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"camera {camera_id}: duplicate {what} ids {dup}")


def check_camera_references(
    camera_id: str,
    zones: Sequence[tuple[str, object]],
    lines: Sequence[str],
    signals: Sequence[str],
    has_ground_plane: bool,
    rules: Sequence[RuleBase],
) -> None:
    """Raise ``ValueError`` naming the camera and rule when a reference does not resolve.

    ``zones`` pairs each zone id with its allowed direction (None when it has none).
    """
    zone_ids = [z for z, _ in zones]
    directions = dict(zones)
    _unique(camera_id, "zone", zone_ids)
    _unique(camera_id, "rule", [r.id for r in rules])
    _unique(camera_id, "signal", list(signals))
    # Lines share the zone id space: an event names the zone or line it is about in one field.
    _unique(camera_id, "zone/line", zone_ids + list(lines))
    known = {
        "zone": set(zone_ids),
        "directed_zone": set(zone_ids),
        "line": set(lines),
        "signal": set(signals),
    }
    for rule in rules:
        for kind, ref in rule.references():
            if kind == "ground_plane":
                if not has_ground_plane:
                    raise ValueError(
                        f"camera {camera_id}: rule {rule.id} needs the camera's ground_plane (calibrate it with "
                        "python -m edge_agent.node.calibrate)"
                    )
                continue
            if ref not in known[kind]:
                raise ValueError(f"camera {camera_id}: rule {rule.id} names unknown {_WHAT[kind]} {ref!r}")
            if kind == "directed_zone" and directions[ref] is None:
                raise ValueError(
                    f"camera {camera_id}: rule {rule.id} needs zone {ref!r} to have a direction (the allowed "
                    "travel direction)"
                )
