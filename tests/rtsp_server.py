"""A real RTSP server for capture tests: GStreamer's ``gst-rtsp-server`` serving an H.264 MP4 clip.

Run with the SYSTEM python (``/usr/bin/python3``), which has the Debian GObject bindings; the project's venv
does not. It serves the clip's own H.264 stream without re-encoding (cheap on a 2-core CI box) at the clip's
frame rate, one fresh pipeline per client (each client starts at the first frame, which is a key frame).

Debian packages: python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
gstreamer1.0-plugins-good (qtdemux, rtph264pay) gstreamer1.0-plugins-bad (h264parse).

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /cam --file clip.mp4

It prints ``READY rtsp://127.0.0.1:PORT/PATH`` once it listens and exits cleanly on SIGTERM or SIGINT;
``--check`` only verifies the GStreamer pieces (exit 0). The test-side fixture (start, stop, restart on the same
port, freeze with SIGSTOP) lives in ``tests/edge_agent/capture/test_capture_rtsp.py``; this file imports nothing from
the project.
"""

from __future__ import annotations

import argparse
import signal
import sys

REQUIRED_ELEMENTS = ("filesrc", "qtdemux", "h264parse", "rtph264pay")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/cam")
    p.add_argument("--file", required=True, help="an MP4 file with an H.264 video track")
    p.add_argument("--check", action="store_true", help="only check that the GStreamer pieces exist")
    args = p.parse_args(argv)

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    missing = [name for name in REQUIRED_ELEMENTS if Gst.ElementFactory.find(name) is None]
    if missing:
        print(f"MISSING GStreamer elements: {' '.join(missing)}", flush=True)
        return 3
    if args.check:
        print("OK", flush=True)
        return 0

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    location = args.file.replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! qtdemux ! h264parse config-interval=-1 '
        "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"FAILED to listen on 127.0.0.1:{args.port}", flush=True)
        return 2

    loop = GLib.MainLoop()

    def _quit(*_: object) -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, _quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, _quit)
    print(f"READY rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
