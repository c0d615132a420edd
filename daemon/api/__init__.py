"""The HTTP API: OpenAI-compatible routes under /v1, Loom's own routes, and /admin.

A handler asks for the services it uses by name, typed ``NamedDependency[...]`` (the names are the
fields of :class:`loom.daemon.services.Services`: ``registry``, ``router``, ``scheduler``,
``files``, ``bodies``, ``routes``, ``health``, ``rag``, ``records``, ``runner``, ``intake``,
``fetcher``, ``responses``, ``catalog``, ``keys``, ``tokens``, ``shutdown``, ``evaluations``, ``questions``,
``sessions``, ``config``), and for path parameters with ``FromPath[...]``. It never reaches into
app state. Guards are declared once, on the Routers in ``app.py``: add a handler to
``V1_ROUTES`` (any key) or ``ADMIN_ROUTES`` (an admin key, mounted under ``/admin``) and it is
guarded. The web UI's pages (:mod:`loom.daemon.ui`) follow the same rules on their own Router,
``/ui``. Each handler describes its wire for the OpenAPI document with
``operation_class=doc(...)`` (:mod:`.openapi`).
"""
