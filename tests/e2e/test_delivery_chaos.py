"""End-to-end acknowledgement under chaos, through real processes: the node (``scripts/outbox_loadgen.py``: the real
publisher, outbox and evidence uploader), a TCP link that is cut every few seconds, Mosquitto without persistence
(SIGKILLed mid-stream: everything it held is gone) or with its *default* limits, and central as a real process
(``central.cli``; SIGKILLed mid-stream). The node forgets an event only when central committed it, so whatever the
broker acknowledged and lost comes again -- and only that.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.e2e.test_delivery_chaos_support import NODE_TOKEN, CentralProcess, LinkProxy
from tests.e2e.test_delivery_support import Broker, loadgen, node_config

pytestmark = pytest.mark.e2e

CENTRAL_ENV = {"STREETWATCH_INGEST_REQUIRE_ENROLLMENT": "false"}  # enrollment: tests/central/messaging


class Cutter:
    """Cuts the link every 2-6 s (seeded) until stopped."""

    def __init__(self, proxy: LinkProxy, seed: int = 5) -> None:
        self.proxy = proxy
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._rng.uniform(2.0, 6.0)):
            self.proxy.cut()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.slow
def test_chaos_link_cuts_central_and_broker_sigkill_exactly_once_and_few_publishes(tmp_path: Path) -> None:
    total = 5_000
    broker = Broker(tmp_path / "broker", persistent=False)
    broker.start()
    proxy = LinkProxy(broker.port)
    central = CentralProcess(tmp_path, broker.port, **CENTRAL_ENV)
    central.start()
    config = node_config(
        tmp_path,
        "chaos-node",
        proxy.port,
        central_url=central.url,
        outbox={"ack_gap_s": 5.0, "ack_timeout_s": 20.0, "max_unconfirmed": 500, "upload_rate_bytes_s": None},
    )
    cutter: Cutter | None = None
    try:
        with loadgen(
            config,
            "--count",
            str(total),
            "--batch",
            "250",
            "--evidence-bytes",
            "1200",
            "--exit-when-drained",
            "--timeout",
            "540",
            env={"STREETWATCH_NODE_TOKEN": NODE_TOKEN},
        ) as gen:
            gen.wait_json("spooled", 120)
            cutter = Cutter(proxy)
            wait_until(lambda: central.count() >= total * 0.2, 240, 0.2, "20% at central")
            central.kill()
            at_central_kill = central.count()
            time.sleep(1.0)
            central.start()
            wait_until(lambda: central.count() >= total * 0.5, 240, 0.2, "50% at central")
            broker.kill()  # persistence off: central's queue, its session and the node's acks are gone
            at_broker_kill = central.count()
            time.sleep(1.0)
            broker.start()
            assert gen.wait(560) == 0, gen.stderr()
            end = gen.wait_json("drained", 5)
        cutter.stop()
        wait_until(lambda: central.count() == total, 60, 0.2, f"{total} events at central")
        assert at_central_kill < at_broker_kill < total, "the kills came too late to test anything"
        seqs = central.seqs()
        assert seqs == list(range(total)), "exactly once: every event, none twice"
        assert central.without_evidence() == 0 and central.evidence_count() == total
        assert end["drained"] and end["confirmed"] >= total
        health = central.health()
        print(
            f"cuts={proxy.cuts} central killed at {at_central_kill}, broker killed at {at_broker_kill}; "
            f"node: {json.dumps(end)}; central ingest: {json.dumps(health['ingest'])}"
        )
        assert proxy.cuts >= 5, "the link was not cut often enough to test anything"
        # Publishes by the outbox (first tries + republishes). paho's DUP resends of the <= max_inflight
        # messages in flight at each cut come on top; they are bounded by cuts x max_inflight.
        assert end["sent"] <= 1.2 * total, end
    finally:
        if cutter is not None:
            cutter.stop()
        central.stop()
        proxy.close()
        broker.stop()


@pytest.mark.slow
def test_mosquitto_defaults_and_a_slow_central_lose_nothing(tmp_path: Path) -> None:
    """Mosquitto with its default limits (max_queued_messages 1000: beyond it QoS 1 messages for a client that is
    away are dropped silently after their PUBACK) while central is down and then slow: the node republishes
    what central never acknowledged, so nothing is lost."""
    total = 3_000
    broker = Broker(tmp_path / "broker", persistent=False, defaults=True)
    broker.start()
    central = CentralProcess(
        tmp_path,
        broker.port,
        **CENTRAL_ENV,
        STREETWATCH_INGEST_BATCH_MAX="20",
        STREETWATCH_INGEST_BATCH_WAIT_S="0",
    )
    central.start()
    central.kill()  # its persistent session stays on the broker: QoS 1 events queue there (up to 1000)
    config = node_config(
        tmp_path,
        "default-node",
        broker.port,
        central_url=central.url,
        outbox={"ack_gap_s": 5.0, "ack_timeout_s": 10.0, "ack_timeout_max_s": 20.0, "max_unconfirmed": 5000},
    )
    try:
        with loadgen(
            config, "--count", str(total), "--batch", "500", "--exit-when-drained", "--timeout", "400"
        ) as gen:
            gen.wait_json("spooled", 60)
            # The node publishes all 3,000 within seconds and the broker acknowledges each; more than 1,000
            # cannot be queued for the absent central.
            wait_until(lambda: "Outgoing messages are being dropped" in broker.log(), 60, 0.2, "broker drops")
            time.sleep(2.0)
            central.start()
            assert gen.wait(420) == 0, gen.stderr()
            end = gen.wait_json("drained", 5)
        wait_until(lambda: central.count() == total, 60, 0.2, f"{total} events at central")
        assert central.seqs() == list(range(total))
        print(f"node: {json.dumps(end)}")
        assert end["republished"] > 0, "the broker dropped nothing: the test tested nothing"
    finally:
        central.stop()
        broker.stop()
