"""Stage 2, perception: ``Frame``s -> ``Detections`` -> ``Track``s.

``detector`` runs the ONNX model over a batch (letterbox, decode, NMS, look-alike merge); ``tracker`` is one
ByteTrack-style tracker per camera giving stable ids, anchors and velocities. The tracks go to ``rules``.
"""
