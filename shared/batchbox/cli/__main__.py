"""``python -m batchbox.cli``: the same as the ``batchbox`` command."""

import sys

from batchbox.cli import main

sys.exit(main())
