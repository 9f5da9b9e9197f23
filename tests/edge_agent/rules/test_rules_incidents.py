"""The shared bookkeeping: debounced membership and the incident book (merge, update, grace, cooldown,
schedule)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import TrackSnapshot
from edge_agent.rules.incidents import IncidentBook
from edge_agent.rules.sceneconfig import ScheduleConfig
from edge_agent.rules.schedule import ScheduleGate, fixed_clock
from edge_agent.rules.zonestate import Debounced, TrackStates, ZoneShape
from tests.edge_agent.rules.rulekit import LOCAL_MIDNIGHT_MON, frames

OBJ = (TrackSnapshot(1, "car", 0.9, np.array([0, 0, 10, 10], np.float32)),)


def book(**kw: float) -> IncidentBook:
    params = {"end_grace_s": 2.0, "cooldown_s": 10.0, "update_interval_s": 0.0}
    params.update(kw)
    return IncidentBook("r1", "z1", EventType.WRONG_WAY, **params)


def run(b: IncidentBook, trigger_at: set[float], start: float, stop: float, dt: float = 0.5):
    out = []
    for t in frames(start, stop, dt):
        out += b.begin(t)
        if t in trigger_at:
            f = b.trigger("track-1", t, started=t - 1.0, objects=OBJ, measurements={"x": t})
            if f is not None:
                out.append(f)
        out += b.finish(t)
    return [(f.phase.value, f.now, f.started) for f in out]


def test_repeated_triggers_merge_into_one_event_that_ends_after_the_grace():
    b = book()
    assert run(b, {1.0, 1.5, 2.0, 2.5}, 0.0, 10.0) == [("start", 1.0, 0.0), ("end", 5.0, 0.0)]


def test_updates_while_it_lasts():
    b = book(update_interval_s=1.0)
    got = run(b, {t / 2 for t in range(2, 9)}, 0.0, 8.0)
    assert [p for p, _, _ in got] == ["start", "update", "update", "update", "end"]
    assert [n for _, n, _ in got] == [1.0, 2.0, 3.0, 4.0, 6.5]


@pytest.mark.parametrize(
    ("second_at", "fires_again"),
    [
        pytest.param(12.0, False, id="inside-cooldown"),  # ended at 3.5, cooling until 13.5
        pytest.param(14.0, True, id="after-cooldown"),
    ],
)
def test_cooldown_suppresses_repeats(second_at, fires_again):
    b = book()
    got = run(b, {1.0, second_at}, 0.0, 30.0)
    starts = [g for g in got if g[0] == "start"]
    assert len(starts) == (2 if fires_again else 1)
    if not fires_again:
        assert b.suppressed == 1


def test_end_measurements_and_duration():
    b = book()
    [start] = [b.trigger("k", 1.0, started=0.5, objects=OBJ, measurements={"speed": 3.0})]
    assert start is not None and start.measurements == {"speed": 3.0, "duration_s": 0.5}
    assert b.trigger("k", 2.0, started=0.5, objects=OBJ, measurements={"speed": 4.0}) is None
    end = b.end("k", 2.5)
    assert end is not None and end.phase is Phase.END
    assert end.measurements == {"speed": 4.0, "duration_s": 1.5}  # up to the last trigger
    assert b.end("k", 3.0) is None and b.cooling("k", 3.0)


def test_schedule_closes_open_incidents_and_blocks_new_ones():
    windows = ScheduleConfig.model_validate({"windows": [{"start": "00:00", "end": "00:01"}]})
    b = book(end_grace_s=1000.0)
    b.gate = ScheduleGate(windows, fixed_clock(LOCAL_MIDNIGHT_MON))
    assert b.begin(0.0) == []
    assert b.trigger("k", 0.0, started=-5.0, objects=OBJ) is not None
    [end] = b.begin(60.0)  # 00:01 local: the window closes
    assert end.phase is Phase.END
    assert b.trigger("k2", 61.0, started=61.0, objects=OBJ) is None
    assert b.suppressed == 1


def test_start_is_clamped_to_when_the_window_opened():
    windows = ScheduleConfig.model_validate({"windows": [{"start": "00:01", "end": "01:00"}]})
    b = book()
    b.gate = ScheduleGate(windows, fixed_clock(LOCAL_MIDNIGHT_MON))
    b.begin(30.0)
    b.begin(60.0)
    f = b.trigger("k", 70.0, started=0.0, objects=OBJ)
    assert f is not None and f.started == 60.0


def test_book_state_is_bounded():
    b = book(cooldown_s=5.0)
    for i in range(100):
        b.trigger(f"k{i}", float(i), started=float(i), objects=OBJ)
        b.finish(float(i))
    assert len(b.finish(1000.0)) == 3  # the last ones end; their cooldowns run out later
    b.finish(2000.0)
    assert b.size == 0


@pytest.mark.parametrize(
    ("raws", "n", "values"),
    [
        ("iiioooo", 3, "FFTTTFF"),
        ("ioioioio", 2, "FFFFFFFF"),
        ("iioiio", 2, "FTTTTT"),
        ("i", 1, "T"),
    ],
)
def test_debounced(raws, n, values):
    d = Debounced(n)
    got = "".join("T" if d.update(c == "i", float(t)) else "F" for t, c in enumerate(raws))
    assert got == values


def test_zone_shape_and_track_states():
    z = ZoneShape([(0.0, 0.0), (0.5, 0.0), (0.5, 0.5)], (100, 100))
    assert z.contains((40.0, 10.0)) and not z.contains((10.0, 40.0)) and not z.contains((60.0, 10.0))
    with pytest.raises(ValueError):
        ZoneShape([(0.0, 0.0), (0.5, 0.0), (0.5, 0.5)], (0, 100))
    states: TrackStates[list[int]] = TrackStates(list, 5.0)
    s, gap = states.observe(1, 0.0)
    assert gap == float("inf")
    s.append(1)
    s2, gap = states.observe(1, 2.0)
    assert s2 is s and gap == 2.0
    states.prune(10.0, keep=lambda tid: tid == 1)
    assert 1 in states
    states.prune(10.0)
    assert len(states) == 0
