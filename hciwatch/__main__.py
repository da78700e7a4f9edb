"""``python -m hciwatch`` runs the CLI."""

import sys

from hciwatch.cli import main

sys.exit(main())
