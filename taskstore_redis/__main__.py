"""``python -m taskstore_redis``: the ``taskstore-redis`` command."""

import sys

from ._cli.main import main

sys.exit(main())
