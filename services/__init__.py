"""Step services: one folder each, a thin binding of a kernel to its topics."""
