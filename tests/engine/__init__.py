"""Tests of the sync core, mirroring rtarf_sync/engine/."""
