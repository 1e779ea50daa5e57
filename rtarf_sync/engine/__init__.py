"""The sync core: service, reader, sink, documents, lease, run history, tables, clients.

Nothing here imports Flask or APScheduler; the service layer (`rtarf_sync.service`)
and the command line (`rtarf_sync.cli`) drive it.
"""
