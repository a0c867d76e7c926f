"""``python -m cryohet ...``: the same CLI as the ``cryohet`` console script."""

import sys

from .cli.app import main

raise SystemExit(main(sys.argv[1:]))
