"""``python -m darkroom``: the ``darkroom`` command."""

import sys

from darkroom.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
