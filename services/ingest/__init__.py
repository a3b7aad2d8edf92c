"""ingest: LDC files -> ``lisa.segments.raw``, one event per segment, all or nothing per file."""
