"""scripts/install-node.sh for real, under a --prefix: a fresh venv with streetwatch[edge] pip-installed (with its
dependencies, from the configured package index), the tree and its permissions, the installed agent running,
idempotent re-runs, the systemd unit (checked with systemd-analyze when present) and --dry-run."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ASSETS, ROOT

INSTALLER = ROOT / "scripts" / "install-node.sh"


def install(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALLER), "--prefix", str(prefix), "--python", sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def source_copy(dest: Path) -> Path:
    """What a release tarball holds for pip: building in a copy keeps build/ and *.egg-info out of the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for package in ("edge_agent", "central"):
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("install")
    src = source_copy(base / "src")
    prefix = base / "root"
    r = install(prefix, "--no-systemd", "--source", str(src), "--asset-mirror", str(ASSETS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "streetwatch-agent 0.1.0" in r.stdout
    return prefix, src


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "kind", "mode"),
    [
        ("opt/streetwatch", "dir", 0o755),
        ("opt/streetwatch/venv/bin/streetwatch-agent", "file", None),
        (
            "opt/streetwatch/assets/models/yolo11n_coco_640_int8dyn.onnx",
            "file",
            0o644,
        ),  # readable by the service
        ("etc/streetwatch", "dir", 0o750),
        ("etc/streetwatch/agent.yaml", "file", 0o640),
        ("etc/streetwatch/agent.env", "file", 0o600),
        ("var/lib/streetwatch", "dir", 0o750),
        ("usr/local/bin/streetwatch-agent", "link", None),
    ],
)
def test_tree_and_permissions(installed: tuple[Path, Path], path: str, kind: str, mode: int | None) -> None:
    prefix, _ = installed
    p = prefix / path
    st = p.lstat()
    assert {"dir": stat.S_ISDIR, "file": stat.S_ISREG, "link": stat.S_ISLNK}[kind](st.st_mode), path
    if mode is not None:
        assert stat.S_IMODE(st.st_mode) == mode, f"{path}: {oct(stat.S_IMODE(st.st_mode))}"
    if kind == "link":
        assert os.readlink(p) == str(prefix / "opt/streetwatch/venv/bin/streetwatch-agent")


@pytest.mark.slow
def test_installed_agent_runs_its_installed_config(installed: tuple[Path, Path]) -> None:
    prefix, _ = installed
    agent = prefix / "opt/streetwatch/venv/bin/streetwatch-agent"
    version = subprocess.run([str(agent), "--version"], capture_output=True, text=True, timeout=60)
    assert (version.returncode, version.stdout.strip()) == (0, "streetwatch-agent 0.1.0")
    where = subprocess.run(
        [
            str(prefix / "opt/streetwatch/venv/bin/python"),
            "-c",
            "import edge_agent; print(edge_agent.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=prefix,
    )
    assert where.stdout.startswith(str(prefix / "opt/streetwatch/venv/lib")), (
        where.stdout
    )  # a copy, not editable
    config = prefix / "etc/streetwatch/agent.yaml"
    text = config.read_text()
    assert f"path: {prefix}/opt/streetwatch/assets/models/yolo11n_coco_640_int8dyn.onnx" in text
    assert f"dir: {prefix}/var/lib/streetwatch" in text
    check = subprocess.run(
        [str(agent), "check", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok: 1 camera(s), model yolo11n_coco_640_int8dyn.onnx")
    status = subprocess.run(
        [str(agent), "status", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 3 and "no status file" in status.stderr  # installed, never run


@pytest.mark.slow
def test_rerun_keeps_config_and_secrets_and_installs_the_unit(installed: tuple[Path, Path]) -> None:
    prefix, src = installed
    config, secrets = prefix / "etc/streetwatch/agent.yaml", prefix / "etc/streetwatch/agent.env"
    config.write_text(config.read_text() + "# edited by the technician\n")
    secrets.write_text("STREETWATCH_NODE_TOKEN=a-token-of-this-node\n")
    secrets.chmod(0o644)  # someone loosened it: the installer tightens it again
    r = install(prefix, "--source", str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reusing venv" in r.stdout and "keeping" in r.stdout
    assert config.read_text().endswith("# edited by the technician\n")
    assert secrets.read_text() == "STREETWATCH_NODE_TOKEN=a-token-of-this-node\n"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    unit = prefix / "etc/systemd/system/streetwatch-agent.service"
    text = unit.read_text()
    for line in (
        "Type=notify",
        "Restart=always",
        "WatchdogSec=60",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        f"ReadWritePaths={prefix}/var/lib/streetwatch",
        f"ExecStart={prefix}/opt/streetwatch/venv/bin/streetwatch-agent run --config {prefix}/etc/streetwatch/agent.yaml",
    ):
        assert line in text.splitlines(), line
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit was not verified")
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stderr) == (0, ""), verify.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "/nonexistent/streetwatch.whl"], "no such --source"),
        (["--frobnicate"], "unknown option: --frobnicate"),
        (["--asset-mirror", "/nonexistent"], "is not a folder"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    r = install(tmp_path / "root", "--dry-run", *args)
    assert r.returncode == 1 and message in r.stderr


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    r = install(tmp_path / "root", "--dry-run", "--asset-mirror", str(ASSETS))
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "root").exists()
    assert f"+ install -d -m 0750 {tmp_path}/root/var/lib/streetwatch" in r.stdout
    assert "fetch_assets.py --mirror" in r.stdout and "streetwatch-agent.service" in r.stdout
