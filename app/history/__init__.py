"""Sync history ("Synchronisierungsverlauf"): reading the `sync_record` rows the sync writes."""
