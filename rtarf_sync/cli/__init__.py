"""The command line, `python -m rtarf_sync COMMAND`, and its progress output."""
