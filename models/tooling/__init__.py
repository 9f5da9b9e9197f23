"""Offline model tooling: export, dequantize, dynamic batch, static INT8 (QDQ) quantization and its report.

These are development tools, run on a workstation or in CI, never by an edge agent: they need ``onnx``
(``pip install 'streetwatch[export]'`` or just ``pip install onnx``) on top of the ``edge`` extra, and the
export step additionally needs Ultralytics. The runtime only ever loads the ``.onnx`` files they produce.
"""

from __future__ import annotations


class ToolingError(RuntimeError):
    """A model transform cannot be done safely; the message names the node or file and why."""
