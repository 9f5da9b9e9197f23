"""``streetwatch-agent``: run the agent, or check a config without running it.

Exit codes: 0 ok, 1 runtime failure (a camera failed), 2 invalid config, 3 missing or unreadable model/video.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from edge_agent import __version__
from edge_agent.capture import CaptureError, VideoSource
from edge_agent.config import ConfigError, load_config

EXIT_CONFIG = 2
EXIT_ASSET = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streetwatch-agent", description="streetwatch edge agent")
    p.add_argument("--version", action="version", version=f"streetwatch-agent {__version__}")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the cameras of a config and publish events")
    run.add_argument("--config", "-c", type=Path, required=True, help="agent YAML config")
    run.add_argument(
        "--fast", action="store_true", help="replay video files as fast as possible instead of in real time"
    )
    check = sub.add_parser("check", help="validate a config, the model and the video sources, then exit")
    check.add_argument("--config", "-c", type=Path, required=True, help="agent YAML config")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upload drowns the agent's own
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(f"streetwatch-agent: {err}", file=sys.stderr)
        return EXIT_CONFIG

    # Imported here so `check` of a broken config answers fast and without onnxruntime.
    from edge_agent.detector.onnx_detector import DetectorError

    if args.command == "check":
        try:
            from edge_agent.detector.onnx_detector import OnnxDetector

            det = OnnxDetector(cfg.model)
            for c in cfg.cameras:
                VideoSource(c.id, c.source)
        except (DetectorError, CaptureError) as err:
            print(f"streetwatch-agent: {err}", file=sys.stderr)
            return EXIT_ASSET
        except ValueError as err:
            print(f"streetwatch-agent: {args.config}: {err}", file=sys.stderr)
            return EXIT_CONFIG
        print(
            f"ok: {len(cfg.cameras)} camera(s), model {det.model_name} ({det.input_size}px, {len(det.names)} classes)"
        )
        return 0

    from edge_agent.agent import Agent

    try:
        agent = Agent(cfg, realtime=False if args.fast else None)
    except (DetectorError, CaptureError) as err:
        print(f"streetwatch-agent: {err}", file=sys.stderr)
        return EXIT_ASSET
    except ValueError as err:
        print(f"streetwatch-agent: {args.config}: {err}", file=sys.stderr)
        return EXIT_CONFIG

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("edge_agent").info("signal %d: stopping", signum)
        agent.stop_event.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
