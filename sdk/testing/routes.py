"""The conformance check for a plugin's HTTP routes (``register_routes``), without a daemon."""

from __future__ import annotations

from typing import Any

from ..routes import route_claims


def registered_routes(plugin: Any, loom: Any = None, options: Any = None) -> list[Any]:
    """What ``plugin``'s ``register_routes`` registers, called as the daemon calls it (``loom``:
    a :class:`~loom.sdk.routes.RouteContext` if the plugin uses one while registering)."""
    import pluggy

    from .. import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name="under-test")
    pm.check_pending()
    registered: list[Any] = []
    args = {"register": registered.append, "loom": loom, "options": options}
    for impl in pm.hook.register_routes.get_hookimpls():
        impl.function(**{k: v for k, v in args.items() if k in impl.argnames})
    return registered


def route_problems(plugin: Any, loom: Any = None, options: Any = None) -> list[str]:
    """What the daemon would refuse in ``plugin``'s routes ([] if nothing): an item that is not a
    Litestar route handler or Router, a relative path, a path of Loom's own (``/v1``, ``/admin``,
    ``/ui``, ...), or no route at all."""
    items = registered_routes(plugin, loom, options)
    if not items:
        return ["register_routes registers no route"]
    return route_claims(items)[1]
