"""Model files live here as a manifest (``manifest.yaml``); ``models.tooling`` holds the offline model tools.

A regular package (not a namespace one) so that ``import models.tooling`` cannot be shadowed by some other
``models`` directory on the path. Nothing here is imported by the edge runtime.
"""
