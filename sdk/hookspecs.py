"""The hooks a Loom plugin may implement.

A plugin is a module (or object) registered under the ``loom`` entry-point group. It implements any
of these with the :data:`hookimpl` marker. Registration hooks take a ``register`` callback, so the
daemon knows which plugin registered what and refuses to start on a duplicate name, naming both.
A plugin may also define ``PluginOptions``, a msgspec Struct that its ``[plugins.NAME]`` config
section is decoded into.

Hooks evolve by adding arguments only; an implementation may take fewer arguments than the spec.
"""

from __future__ import annotations

import pluggy

PROJECT = "loom"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_providers(register):
    """Called once at start-up. Call ``register(ProviderClass)`` for each provider class.

    The class follows :class:`loom.sdk.protocols.Provider`; its ``name`` is what ``provider =``
    in a ``[[models]]`` entry refers to. Every plugin's implementation is called; returns nothing.
    """


@hookspec
def register_models(register):
    """Called once at start-up, after providers. Call ``register(ModelConfig)`` to add models.

    For plugins that ship their own models (e.g. weights inside the package). Models from the
    config file come first; a duplicate id or alias stops start-up. Returns nothing.
    """


@hookspec
def register_pipelines(register):
    """Called once at start-up. Call ``register(PipelineClass)`` for each pipeline.

    A pipeline has a ``name``, a ``Params`` msgspec Struct and an async ``run(params, ctx)``; see
    :mod:`loom.sdk.pipelines`. Every plugin's implementation is called; returns nothing.
    """


@hookspec
def register_routes(register, loom, options):
    """Called once at start-up, after pipelines. Call ``register(handler)`` for each Litestar route
    handler (or ``Router``) the plugin serves, under paths it names (see :mod:`loom.sdk.routes`).

    ``loom`` is a :class:`loom.sdk.routes.RouteContext`: start jobs, read them and follow their
    events, read and save files. ``options`` is the plugin's ``PluginOptions`` decoded from its
    ``[plugins.NAME]`` section (None without one). Plugin routes sit behind the ``/v1`` key guard.
    A path of Loom's own, or one another plugin claimed, stops start-up naming both. Returns
    nothing.
    """
