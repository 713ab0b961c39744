"""``python -m changestream``: the ``changestream`` command."""

import sys

from changestream.cli import main

sys.exit(main())
