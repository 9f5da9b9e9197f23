"""Evidence for each incident: what an officer looks at, addressed by SHA-256.

``snapshot`` draws and stores annotated/clean JPEGs; ``clips`` keeps a compressed ring of recent frames and
encodes H.264 clips with ffmpeg; ``recorder`` decides per incident which files exist and when (crops at start,
the pre/post-roll clip for a later update). Files are handed to ``delivery`` by reference.
"""
