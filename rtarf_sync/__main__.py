"""`python -m rtarf_sync COMMAND`: see rtarf_sync/cli.py."""

import sys

from rtarf_sync.cli import main

sys.exit(main())
