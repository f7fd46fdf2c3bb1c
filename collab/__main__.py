"""``python -m collab`` is the ``collab`` command."""

import sys

from collab.cli import main

sys.exit(main())
