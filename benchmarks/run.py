"""Run the benchmark: ``python benchmarks/run.py [bench options]`` is ``taskstore-redis bench``.

See benchmarks/README.md for the method, and ``--help`` for the options.
"""

from __future__ import annotations

import sys

from taskstore_redis._cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
