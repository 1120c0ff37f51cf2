"""tardisfs: a FUSE filesystem of backup sets (filled in by a later issue)."""
