"""``python -m despina.control.runner GROUP...``: run these groups' tasks to the end.

``despina group start`` without a server starts this detached, so the command returns
while the work goes on; ``despina task watch`` follows it through the store.
"""

from __future__ import annotations

import logging
import sys

from despina.control.plane import ControlPlane


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    plane = ControlPlane()
    try:
        plane.run(groups=argv or None, until_done=True)
    finally:
        plane.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
