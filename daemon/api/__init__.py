"""The HTTP API: OpenAI-compatible routes under /v1, Loom's own routes, and /admin."""
