"""loom-seed-api: the five seed systems' own APIs on Loom (``register_routes``), so each seed's
existing front end talks to Loom unchanged. ``[plugins.seed_api] seeds = [...]`` picks which."""

from litestar.static_files import create_static_files_router
from loom.sdk import hookimpl

from . import seed000, seed001, seed002, seed003, seed004, seed004_services
from .options import SeedApiOptions

PluginOptions = SeedApiOptions
BUILDERS = {
    "000": [seed000.build],
    "001": [seed001.build],
    "002": [seed002.build],
    "003": [seed003.build],
    "004": [seed004.build, seed004_services.build],
}

__all__ = ["BUILDERS", "PluginOptions", "SeedApiOptions", "register_routes"]


@hookimpl
def register_routes(register, loom, options):
    options = options or SeedApiOptions()
    for seed in sorted(set(options.seeds)):
        for build in BUILDERS[seed]:
            for handler in build(loom, options):
                register(handler)
    for prefix, folder in sorted(options.static.items()):
        register(create_static_files_router(path=prefix, directories=[folder], html_mode=True, include_in_schema=False))
