"""Stage 1, capture: camera sources -> ``Frame``s, and which of them the detector sees.

``sources`` opens files, RTSP/HTTP streams and USB devices (reconnect with backoff); ``reader`` runs one thread
per camera keeping the newest frame, with a stall watchdog and health counters; ``motion`` is the cheap motion
gate; ``scheduler`` picks the cameras due for detection (detect fps, motion, refresh, fairness) and hands a
batch of ``Frame``s to the perception stage.
"""
