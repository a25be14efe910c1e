"""``python -m core ...`` from the plugin folder (see core/cli.py)."""
import sys

from .cli import main

sys.exit(main())
