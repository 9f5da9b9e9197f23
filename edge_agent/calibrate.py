"""``python -m edge_agent.calibrate``: the operators' homography tool, kept at its documented address.

The tool itself lives in ``edge_agent.node.calibrate``; this module only runs it.
"""

import sys

from edge_agent.node.calibrate import main

if __name__ == "__main__":
    sys.exit(main())
