"""loom.tui: the Textual terminal UI, a client of the daemon over HTTP."""
