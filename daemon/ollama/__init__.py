"""Ollama's API in Loom's terms: its wire types, model names, options, the translation of chat
and generate requests, and its answers (the routes are :mod:`loom.daemon.api.ollama`)."""
