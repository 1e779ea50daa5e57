"""`python -m rtarf_sync COMMAND`: see rtarf_sync/cli/main.py."""

import sys

from rtarf_sync.cli.main import main

sys.exit(main())
