"""Object detection: Ultralytics YOLO ONNX exports run with onnxruntime, ``Frame``s in, ``Detections`` out.

``preprocess`` (letterbox) and ``postprocess`` (decode + NMS) are pure numpy and mirror Ultralytics exactly;
``merge`` keeps one box per vehicle across look-alike classes; ``onnx_detector`` holds the session;
``evaluation`` is the COCO-style metric used by scripts/eval_detector.py. Nothing is imported here so that the
numpy-only parts load without onnxruntime.
"""
