"""Object detection: Ultralytics YOLO ONNX exports run with onnxruntime.

``preprocess`` (letterbox) and ``postprocess`` (decode + NMS) are pure numpy and mirror Ultralytics exactly;
``onnx_detector`` holds the session; ``evaluation`` is the COCO-style metric used by scripts/eval_detector.py.
Nothing is imported here so that the numpy-only parts load without onnxruntime.
"""
