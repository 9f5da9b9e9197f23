"""Manifest entries (with sha256) for models generated on this machine, in ``models/local-manifest.yaml``.

Generated models are never committed, and their bytes depend on the onnxruntime version and the calibration
frames, so they do not belong in ``models/manifest.yaml`` (whose hashes must hold everywhere). Each entry is
validated against the same :class:`~edge_agent.node.assets.ModelEntry` schema, so an entry can be moved into the
main manifest unchanged once its file is published to the mirror; ``url`` stays empty until then.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

import yaml

from edge_agent.node.assets import AssetError, Manifest, ModelEntry, load_manifest, sha256_file
from models.tooling import ToolingError

HEADER = (
    "# Models generated locally by scripts/quantize_model.py (not committed; regenerate with the command in\n"
    "# each description). Same schema as models/manifest.yaml's models; url is empty until published.\n"
)


def class_names(meta: dict[str, str]) -> list[str]:
    """Class names from Ultralytics metadata (``"{0: 'person', ...}"``), in class-id order."""
    try:
        parsed = ast.literal_eval(meta.get("names", ""))
    except (ValueError, SyntaxError) as err:
        raise ToolingError("the model has no readable 'names' metadata") from err
    if isinstance(parsed, dict) and all(isinstance(k, int) for k in parsed):
        return [str(parsed[k]) for k in sorted(parsed)]
    if isinstance(parsed, list | tuple):
        return [str(v) for v in parsed]
    raise ToolingError("the model's 'names' metadata is neither a dict nor a list")


def class_set_of(manifest: Manifest, names: Sequence[str]) -> str:
    """Name of the manifest class set equal to the model's class names."""
    for set_name, classes in manifest.class_sets.items():
        if list(classes) == list(names):
            return set_name
    raise ToolingError(f"the model's {len(names)} class names match no class set of the manifest")


def parent_entry(manifest: Manifest, source: Path) -> ModelEntry | None:
    try:
        return manifest.model(source.name)
    except AssetError:
        return None


def entry_for(
    path: Path,
    *,
    manifest: Manifest,
    source: Path,
    input_size: int,
    class_names: Sequence[str],
    description: str,
) -> ModelEntry:
    """A manifest entry for ``path``, derived from ``source`` (licence and export origin carry over)."""
    parent = parent_entry(manifest, source)
    origin = f"{source.name} (sha256 {sha256_file(source)})"
    return ModelEntry(
        name=path.stem,
        file=path.name,
        sha256=sha256_file(path),
        input_size=input_size,
        format="ultralytics-yolo-onnx",
        classes=class_set_of(manifest, class_names),
        description=description,
        source=f"generated locally from {origin} by scripts/quantize_model.py",
        url="",
        export_from=parent.export_from if parent else "",
        licence=parent.licence if parent else "as its source model",
    )


def snippet(entries: Sequence[ModelEntry]) -> str:
    return yaml.safe_dump({"models": [e.model_dump() for e in entries]}, sort_keys=False, allow_unicode=True)


def upsert(path: Path, entries: Sequence[ModelEntry]) -> None:
    """Add or replace entries by name, keeping the other entries of the local manifest."""
    existing: list[dict[str, object]] = []
    if path.is_file():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        models = loaded.get("models", []) if isinstance(loaded, dict) else None
        if not isinstance(models, list):
            raise ToolingError(f"{path}: expected a mapping with a 'models' list")
        existing = [m for m in models if isinstance(m, dict)]
    names = {e.name for e in entries}
    kept = [m for m in existing if m.get("name") not in names]
    for m in kept:
        ModelEntry.model_validate(m)  # refuse to rewrite a file whose other entries are broken
    body = yaml.safe_dump(
        {"models": [*kept, *(e.model_dump() for e in entries)]}, sort_keys=False, allow_unicode=True
    )
    path.write_text(HEADER + body, encoding="utf-8")


def load_main_manifest(path: Path) -> Manifest:
    try:
        return load_manifest(path)
    except AssetError as err:
        raise ToolingError(str(err)) from err
