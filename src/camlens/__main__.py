"""``python -m camlens`` runs the ``camlens`` command."""

import sys

from .cli import main

sys.exit(main())
