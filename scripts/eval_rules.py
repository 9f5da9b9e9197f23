"""Run the rule scenarios on the real clips and report per-rule precision/recall (and the rider measurement).

The scenarios, their zones and their labelled event windows live in ``tests/scenarios/data/*.yaml``; the
runner and the scoring in ``tests/scenarios/harness.py`` (the same code the ``scenario`` tests use). With
``--write docs/benchmarks.md`` the results replace the section between ``<!-- rules:scenarios -->`` and
``<!-- /rules:scenarios -->`` (appended at the end the first time); other sections are left alone.

    python scripts/eval_rules.py [--write docs/benchmarks.md] [--cache var/scenario-cache] [--only RULE]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.scenarios.harness import (  # noqa: E402 - needs the repository root on the path
    TOLERANCE_S,
    DetectionCache,
    RiderStats,
    Scenario,
    Score,
    load_rider_data,
    load_scenarios,
    metrics,
    person_speeds_hps,
    rider_stats,
    run_scenario,
    score,
)
from tests.scenarios.signals import HeadScore, load_heads, score_head  # noqa: E402

BEGIN, END = "<!-- rules:scenarios -->", "<!-- /rules:scenarios -->"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _params(s: Scenario) -> str:
    out = []
    for rule in s.camera.get("rules", []):
        items = {k: v for k, v in rule.items() if k not in ("id", "type", "forbidden")}
        pairs = [f"{p['from_zone']} -> {p['to_zone']}" for p in rule.get("forbidden", [])]
        out.append(
            ", ".join(
                [f"forbidden {', '.join(pairs)}"] * bool(pairs) + [f"{k} {v}" for k, v in items.items()]
            )
        )
    for zone in s.camera.get("zones", []):
        if zone.get("direction") is not None:
            out.append(f"{zone['id']} direction {zone['direction']}")
    return "; ".join(out).replace("|", "/")


def _windows(s: Scenario) -> str:
    if not s.windows:
        return "none (negative)"
    return "; ".join(f"{w.start[0]:g}-{w.start[1]:g}{' (any number)' if w.many else ''}" for w in s.windows)


def _result(sc: Score) -> str:
    if not sc.starts:
        return "no event"
    starts = ", ".join(
        f"{st.t:.1f}{'' if hit is not None else '✗'}" for st, hit in zip(sc.starts, sc.hits, strict=True)
    )
    return f"{len(sc.starts)} events (START s: {starts}); {len(sc.matched)}/{sc.windows} windows hit"


def _verdict(sc: Score) -> str:
    if sc.scenario.known_failure:
        return "known failure" + (" (now passes!)" if sc.passed else "")
    return "pass" if sc.passed else "**FAIL**"


WALKERS = ("pedestrian_street_towncentre_fixedcam_1920x1080.mp4", 10.0)


def _quantiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    ordered = sorted(values)
    if not ordered:
        return [float("nan")] * len(qs)
    return [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in qs]


def markdown(
    scores: list[Score],
    riders: list[RiderStats],
    walkers: list[float],
    cache: DetectionCache,
    wall_s: float,
    argv: str,
    cached: bool,
    heads: list[HeadScore] | None = None,
    heads_s: float = 0.0,
    hue_only: list[HeadScore] | None = None,
) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    per_rule = metrics(scores)
    lines = [
        BEGIN,
        "## Rules on the real clips (scenarios)",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"1-min load average {load:.2f} at the end",
        f"- command: `python scripts/eval_rules.py {argv}`".rstrip(),
        f"- model: `{cache.detector.model_name}` (sha256 `{cache.detector.model_sha256[:16]}...`), agent detector "
        "defaults (conf 0.1, NMS 0.45, car/truck/bus merge); the real ByteTrack-style tracker; the rules through "
        "`CameraPipeline.process_detections`",
        f"- {len(scores)} scenarios from `tests/scenarios/data/*.yaml` and the rider measurement; "
        f"{cache.detect_frames} frames through the detector in {cache.detect_seconds:.0f} s"
        f"{' (others from the --cache folder)' if cached else ''}, whole run {wall_s:.0f} s",
        "",
        "Each positive scenario has event windows labelled by looking at the footage (when the incident happens, "
        "and where when several happen at once). An event matches a window when its START (`started_at`, the "
        f"moment the rule dates the incident to) lies in it, +/- {TOLERANCE_S} s; one event per window unless the "
        "window allows any number (dense traffic). Precision = matching events / events (every event of a "
        "negative scenario is a false positive); recall = windows hit / windows. Few scenarios and short clips: "
        "these are smoke figures for the rules on real detections, not accuracy estimates.",
        "",
        "| rule | scenarios (+/-) | pass | events | matching | windows hit | precision | recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in per_rule.values():
        lines.append(
            f"| {m.rule} | {m.scenarios} ({m.positives}/{m.negatives}) | {m.passed}/{m.scenarios} | {m.events} | "
            f"{m.tp} | {m.windows_hit}/{m.windows} | {_pct(m.precision)} | {_pct(m.recall)} |"
        )
    lines += [
        "",
        "| scenario | clip | parameters | expected START windows (s) | result (✗ = matches no window) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for sc in scores:
        s = sc.scenario
        clip = s.clip + (f" (first {s.seconds:g} s)" if s.seconds else "")
        lines.append(
            f"| {s.id} ({s.expect}) | {clip} @ {s.detect_fps:g} fps | {_params(s)} | {_windows(s)} | "
            f"{_result(sc)} | {_verdict(sc)} |"
        )
    failures = [sc.scenario for sc in scores if sc.scenario.known_failure]
    if failures:
        lines += ["", "Known failures (strict xfails in the tests):", ""]
        lines += [f"- `{s.id}`: {s.known_failure}" for s in failures]
    if heads:
        lines += _heads_section(heads, heads_s, hue_only or [])
    if riders:
        lines += [
            "",
            "### Riders without scooters (Vietnamese clips)",
            "",
            "A person track is a rider when its anchor travels at least 1.5 of its box heights on the labelled "
            "carriageway (`tests/scenarios/data/riders.yaml`; every such track was looked at on a crop: all are "
            "people on two-wheelers). Per frame: is a motorcycle box (any score the detector keeps, >= 0.1) under "
            "the rider (`motion.on_motorcycle`)? The rider heuristic (`motion.is_rider`, default 1.5 body "
            "heights/s) should stand in for the scooter on exactly those frames.",
            "",
            "| clip | person tracks | riders | rider frames without a scooter box | rider tracks mostly without "
            "| of those, flagged by the heuristic | frames without a scooter box the heuristic covers |",
            "|---|---|---|---|---|---|---|",
        ]
        for st in riders:
            need = st.tracks_mostly_without_bike
            lines.append(
                f"| {st.clip} | {st.person_tracks} | {len(st.riders)} | {st.rider_frames_without_bike}/"
                f"{st.rider_frames} ({st.frame_rate_without_bike:.0%}) | {len(need)} | {len(st.flagged(need))} | "
                f"{st.rider_frames_without_bike_flagged}/{st.rider_frames_without_bike} |"
            )
        frames = sum(s.rider_frames for s in riders)
        missed = sum(s.rider_frames_without_bike for s in riders)
        need_all = [r for s in riders for r in s.tracks_mostly_without_bike]
        lines.append(
            f"| all | {sum(s.person_tracks for s in riders)} | {sum(len(s.riders) for s in riders)} | "
            f"{missed}/{frames} ({missed / max(frames, 1):.0%}) | {len(need_all)} | "
            f"{len([r for r in need_all if r.flagged])} | "
            f"{sum(s.rider_frames_without_bike_flagged for s in riders)}/{missed} |"
        )
        lines += [
            "",
            "Speed as the heuristic sees it (body heights per second over 1.5 s), per frame:",
            "",
            "| who | p10 | p50 | p90 | p99 | max | share >= 1.5 |",
            "|---|---|---|---|---|---|---|",
        ]
        rows = [(f"riders, {st.clip}", st.rider_speeds_hps) for st in riders]
        rows.append((f"walkers, {WALKERS[0]} (every person track)", walkers))
        for name, values in rows:
            q = _quantiles(values, (0.1, 0.5, 0.9, 0.99))
            share = sum(v >= 1.5 for v in values) / max(len(values), 1)
            top = max(values, default=float("nan"))
            lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in [*q, top]) + f" | {share:.0%} |")
        lines += [
            "",
            "Riders filtering slowly through a queue away from the camera (Saigon) move at walking pace in these "
            "units, so no threshold separates them from walkers; the 1.5 default stays (walkers already reach "
            "it on single frames) and such riders are invisible to the vehicle rules while their scooter is "
            "not detected.",
        ]
    lines += ["", END]
    return "\n".join(lines)


def _heads_section(heads: list[HeadScore], seconds: float, hue_only: list[HeadScore]) -> list[str]:
    frames = sum(h.frames for h in heads)
    out = [
        "",
        "### Signal heads, frame by frame (every clip with a head in view)",
        "",
        "Each head's state labelled on every frame by looking at enlarged crops of every frame "
        "(`tests/scenarios/data/signal_heads.yaml`: a flicker-dark frame inside a phase is that phase; "
        "`unclear` frames, a phase change or a head dark with no lit frame after it, are not counted but may not "
        "read a colour the head does not show). Every decoded frame goes through the head's `ColourSignal` "
        "(lamp reader + hysteresis, defaults), as the pipeline does. Correct = the reported state is the label; "
        "wrong = another colour. Raw = the single-frame reading before hysteresis. The thresholds were tuned on "
        f"these frames (no held-out set). {frames} frames read in {seconds:.1f} s "
        f"({1000.0 * seconds / max(frames, 1):.2f} ms per frame and head, decoding included).",
        "",
        "| clip | head | lamps | frames | a person can tell | correct | unknown | wrong colour | raw correct | "
        "raw dark | hue only (before): correct / wrong |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_clip: dict[str, list[HeadScore]] = {}
    before = {h.head.id: h for h in hue_only}
    for h in heads:
        by_clip.setdefault(h.head.clip, []).append(h)
        b = before.get(h.head.id)
        old = f"{b.correct} ({b.accuracy:.1%}) / {b.wrong}" if b is not None else "n/a"
        out.append(
            f"| {h.head.clip} | {h.head.id} | {h.head.lamps} | {h.frames} | {h.counted} | "
            f"{h.correct} ({h.accuracy:.1%}) | {h.unknown} | {h.wrong} | {h.raw_correct} | {h.raw_dark} | {old} |"
        )
    for clip, hs in sorted(by_clip.items()):
        counted = sum(h.counted for h in hs)
        correct = sum(h.correct for h in hs)
        out.append(
            f"| {clip} | all {len(hs)} | | {sum(h.frames for h in hs)} | {counted} | "
            f"{correct} ({correct / max(counted, 1):.1%}) | {sum(h.unknown for h in hs)} | "
            f"{sum(h.wrong for h in hs)} | | | |"
        )
    out += [
        "",
        "Hue only (before) = the same heads read as one-lamp heads (`lamps: 1`: the colour of the hue band with "
        "the most lit pixels, the classifier before issue 13, with today's hysteresis): the overexposed red "
        "lamps read amber or nothing.",
    ]
    return out


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.is_file() else "# streetwatch benchmarks\n"
    pattern = re.compile(rf"{re.escape(BEGIN)}.*?{re.escape(END)}", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", type=Path, help="Markdown file whose rules:scenarios section is replaced.")
    parser.add_argument("--cache", type=Path, help="Keep detections on disk here between runs.")
    parser.add_argument("--only", help="Only the scenarios of this rule type (e.g. red_light).")
    parser.add_argument("--no-riders", action="store_true", help="Skip the rider/scooter measurement.")
    parser.add_argument("--quiet", action="store_true", help="Do not print per-scenario lines.")
    parser.add_argument("--no-heads", action="store_true", help="Skip the signal heads frame by frame.")
    args = parser.parse_args(argv)
    started = time.monotonic()
    cache = DetectionCache(args.cache)
    scenarios = [s for s in load_scenarios() if args.only is None or s.rule.value == args.only]
    scores: list[Score] = []
    with TemporaryDirectory() as tmp:
        for s in scenarios:
            run = run_scenario(s, cache, Path(tmp) / s.id)
            sc = score(s, run.starts)
            scores.append(sc)
            if not args.quiet:
                print(f"{_verdict(sc):14s} {s.id}: {_result(sc)}", flush=True)
    riders: list[RiderStats] = []
    walkers: list[float] = []
    if not args.no_riders:
        data = load_rider_data()
        riders = [rider_stats(c, data.min_travel_heights, cache) for c in data.clips]
        walkers = person_speeds_hps(*WALKERS, cache)
    heads: list[HeadScore] = []
    hue_only: list[HeadScore] = []
    heads_s = 0.0
    if not args.no_heads:
        t0 = time.perf_counter()
        heads = [score_head(h) for h in load_heads()]
        heads_s = time.perf_counter() - t0
        hue_only = [score_head(h, lamps=1) for h in load_heads()]
        for h in heads:
            print(f"signal {h.head.id}: {h.correct}/{h.counted} correct, {h.wrong} wrong", flush=True)
    cache.save()
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    section = markdown(
        scores,
        riders,
        walkers,
        cache,
        time.monotonic() - started,
        argv_text,
        args.cache is not None,
        heads,
        heads_s,
        hue_only,
    )
    if args.write:
        write_section(args.write, section)
        print(f"wrote {args.write}")
    else:
        print(section)
    bad = [sc for sc in scores if not sc.passed and not sc.scenario.known_failure]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
