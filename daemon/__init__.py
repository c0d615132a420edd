"""loom.daemon: the long-running server that owns the GPU (config, plugins, scheduler, HTTP API)."""
