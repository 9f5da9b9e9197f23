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
from edge_agent.capture.sources import CaptureError, VideoSource
from edge_agent.config import AgentConfig, ConfigError, load_config

EXIT_CONFIG = 2
EXIT_ASSET = 3
EXIT_RESTART = 75  # a remote config needs a restart (EX_TEMPFAIL; systemd Restart= starts us again)


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
    rep = sub.add_parser(
        "replay", help="run one camera's clip through the pipeline offline: events, evidence, annotated video"
    )
    rep.add_argument("--config", "-c", type=Path, required=True, help="agent YAML config (zones, rules)")
    rep.add_argument("--camera", help="camera id (default: the first camera)")
    rep.add_argument("--source", help="replay this file instead of the camera's source")
    rep.add_argument("--out", "-o", type=Path, required=True, help="output folder")
    rep.add_argument("--no-video", action="store_true", help="skip the annotated output video")
    rep.add_argument("--max-seconds", type=float, help="stop after this much video time")
    st = sub.add_parser("status", help="summarize the running agent's status file; exit 1 when unhealthy")
    where = st.add_mutually_exclusive_group()
    where.add_argument("--config", "-c", type=Path, help="agent YAML config (its state folder)")
    where.add_argument("--state-dir", type=Path, help="folder holding status.json")
    st.add_argument("--json", action="store_true", help="print the raw status JSON")
    enr = sub.add_parser("enroll", help="enroll this node with central using a one-time token")
    enr.add_argument("--central", required=True, help="central base URL, e.g. https://central.example")
    enr.add_argument("--token", required=True, help="one-time enrollment token ('-': read it from stdin)")
    enr.add_argument("--node-name", required=True, help="human name of this box")
    enr.add_argument("--state-dir", type=Path, help="where credentials.json goes (default var/agent)")
    enr.add_argument("--force", action="store_true", help="enroll again even if credentials exist")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upload drowns the agent's own
    if args.command == "enroll":  # no config needed
        from edge_agent.node.enroll import run_enroll

        return run_enroll(args.central, args.token, args.node_name, args.state_dir, args.force)
    if args.command == "status":  # reads the status file only: works while the agent runs
        from edge_agent.node.status import status_command

        return status_command(args.config, args.state_dir, as_json=args.json)
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(f"streetwatch-agent: {err}", file=sys.stderr)
        return EXIT_CONFIG

    # Imported here so `check` of a broken config answers fast and without onnxruntime.
    from edge_agent.perception.detector.onnx_detector import DetectorError

    if args.command == "check":
        try:
            from edge_agent.evidence.privacy import Anonymizer
            from edge_agent.perception.detector.onnx_detector import OnnxDetector

            det = OnnxDetector(cfg.model)
            Anonymizer.for_agent(cfg)  # the face model must load when blurring is on
            for c in cfg.cameras:
                VideoSource(c.id, c.source)
                if c.evidence_source is not None:  # files are opened and probed; streams only at run
                    VideoSource(c.id, c.evidence_source)
        except (DetectorError, CaptureError) as err:
            print(f"streetwatch-agent: {err}", file=sys.stderr)
            return EXIT_ASSET
        except ValueError as err:
            print(f"streetwatch-agent: {args.config}: {err}", file=sys.stderr)
            return EXIT_CONFIG
        print(
            f"ok: {len(cfg.cameras)} camera(s), model {det.model_name} ({det.input_size}px, {len(det.names)} classes)"
            f" on {det.backend_name} {det.backend_version}"
            + (f" ({det.choice.describe()})" if det.choice is not None else "")
        )
        return 0

    if args.command == "replay":
        return _replay(args, cfg, DetectorError)

    from edge_agent.capture.reader import limit_malloc_arenas
    from edge_agent.contract import Topics
    from edge_agent.node.agent import Agent
    from edge_agent.node.enroll import EnrollError, apply_credentials, load_credentials
    from edge_agent.node.remote_config import RemoteConfig, RemoteConfigListener
    from edge_agent.node.status import state_dir

    folder = state_dir(cfg)
    try:
        creds = load_credentials(folder)
    except EnrollError as err:
        print(f"streetwatch-agent: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if creds is not None:
        cfg = apply_credentials(cfg, creds)  # enrolled node id and MQTT user; secrets into this process's env
    remote = RemoteConfig(
        cfg, folder, base_dir=args.config.resolve().parent
    )  # last good remote config if newer

    limit_malloc_arenas()  # before any reader or runtime thread exists
    try:
        agent = Agent(remote.current, realtime=False if args.fast else None)
    except (DetectorError, CaptureError) as err:
        print(f"streetwatch-agent: {err}", file=sys.stderr)
        return EXIT_ASSET
    except ValueError as err:
        print(f"streetwatch-agent: {args.config}: {err}", file=sys.stderr)
        return EXIT_CONFIG

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("edge_agent").info("signal %d: stopping", signum)
        agent.stop_event.set()

    remote.on_change = agent.apply_config
    RemoteConfigListener(remote, Topics(cfg.topic_prefix), cfg.node_id).attach(agent.publisher.client)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = agent.run()
    return EXIT_RESTART if agent.restart_requested else code


def _replay(args: argparse.Namespace, cfg: AgentConfig, detector_error: type[Exception]) -> int:
    from edge_agent.pipeline.replay import replay

    cams = {c.id: c for c in cfg.cameras}
    camera = cams.get(args.camera) if args.camera else cfg.cameras[0]
    if camera is None:
        print(f"streetwatch-agent: no camera {args.camera!r}; config has {sorted(cams)}", file=sys.stderr)
        return EXIT_CONFIG
    if args.source:
        camera = camera.model_copy(update={"source": str(Path(args.source).resolve())})
    try:
        summary = replay(cfg, camera, args.out, video=not args.no_video, max_seconds=args.max_seconds)
    except (detector_error, CaptureError) as err:
        print(f"streetwatch-agent: {err}", file=sys.stderr)
        return EXIT_ASSET
    print(
        f"replayed {summary.seconds:.1f}s of {camera.id} in {summary.wall_seconds:.1f}s: "
        f"{sum(summary.events.values())} event message(s) {summary.events}, "
        f"{summary.evidence_files} evidence file(s); results in {args.out}"
        + (f", video {summary.video}" if summary.video else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
