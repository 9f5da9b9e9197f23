"""Console and markdown renderings of a quantization job's :class:`~models.tooling.pipeline.Outcome`.

The markdown says how every number was obtained (machine, load, thread count, thresholds, frames, command),
because a latency or mAP figure without its conditions cannot be compared with the next run's.
"""

from __future__ import annotations

from models.tooling.pipeline import Options, Outcome
from models.tooling.qdq import HeadScope, describe_exclusions
from models.tooling.report import MAP_CONF, MAP_IOU, eval_script, markdown_section, table


def scope_lines(outcome: Outcome, opts: Options, markdown: bool) -> list[str]:
    """mAP per head scope (the chosen one from the main table, the others from --compare-scopes)."""
    if not outcome.scopes or not outcome.rows:
        return []
    chosen = outcome.rows[-1]
    results = {opts.settings.head_scope.value: (chosen.map50, chosen.map50_95)}
    results.update({k: (v.map50, v.map50_95) for k, v in outcome.scopes.items()})
    ordered = [s.value for s in HeadScope if s.value in results]
    if markdown:
        lines = [
            "Head scope comparison (same calibration; which Detect-head nodes stay float):",
            "",
            "| head scope | mAP50 | mAP50-95 | kept |",
            "|---|---|---|---|",
        ]
        for s in ordered:
            mark = "yes" if s == opts.settings.head_scope.value else ""
            lines.append(f"| {s} | {results[s][0]:.3f} | {results[s][1]:.3f} | {mark} |")
        return lines
    return ["head scopes (mAP50 / mAP50-95):"] + [
        f"  {s:<17} {results[s][0]:.3f} / {results[s][1]:.3f}"
        + ("  <- kept" if s == opts.settings.head_scope.value else "")
        for s in ordered
    ]


def checks(outcome: Outcome) -> list[str]:
    lines = []
    if outcome.raw_deviation is not None:
        lines.append(
            f"dequantize check (fp32 vs int8 dynamic raw output): {outcome.raw_deviation.describe()}"
        )
    for name, dev in outcome.batch_deviation.items():
        lines.append(
            f"dynamic batch check ({name}): batch of 3 frames vs 3 single runs, max |diff| {dev:.3g}"
        )
    return lines


def console(outcome: Outcome, opts: Options) -> str:
    written = [outcome.qdq_path] if outcome.fp32_path == opts.model else [outcome.fp32_path, outcome.qdq_path]
    parts = [f"wrote {' and '.join(str(p) for p in written)}", *checks(outcome)]
    if outcome.rows:
        parts += ["", table(outcome.rows, markdown=False), *scope_lines(outcome, opts, markdown=False)]
    return "\n".join(parts)


def markdown(outcome: Outcome, opts: Options, command: str) -> str:
    """The ``docs/benchmarks.md`` section of this run (requires a report)."""
    if not outcome.rows:
        raise ValueError("no measurements: run with --report")
    samples = outcome.rows[0].latency_samples
    facts = [
        f"1-min load average {outcome.load[0]:.2f} before the measurements, {outcome.load[1]:.2f} after "
        "(the machine is shared; latency is measured interleaved so every model sees the same load)",
        f"calibration: {outcome.calib_frames} frames from {', '.join(f'`{c}`' for c in opts.calib)}, "
        "spread evenly over each clip, letterboxed like the detector",
        f"quantization: {opts.settings.describe()}",
        f"kept in float: {describe_exclusions(outcome.excluded)}",
        f"mAP: `scripts/eval_detector.py` logic on {opts.data.name if opts.data else '?'} "
        f"({'all images' if opts.limit is None else f'first {opts.limit} images'}), conf {MAP_CONF:g}, "
        f"NMS IoU {MAP_IOU:g}; the delta is against the first row",
        f"latency: `OnnxDetector.detect` per image (letterbox + run + decode at the agent defaults conf "
        f"{eval_script().DEPLOY_CONF:g}, IoU {eval_script().DEPLOY_IOU:g}), batch 1, intra-op threads "
        f"{opts.threads}, {samples} images per model",
        *checks(outcome),
        "sha256: " + "; ".join(f"`{r.path.name}` `{r.sha256}`" for r in outcome.rows),
        f"command: `{command}`",
    ]
    title = f"Static INT8 (QDQ) of `{opts.model.name}` -> `{opts.out.name}`"
    return markdown_section(
        opts.out.name, title, outcome.rows, facts, scope_lines(outcome, opts, markdown=True)
    )
