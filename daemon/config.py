"""The daemon's configuration: ``plugins.toml`` decoded strictly into frozen msgspec Structs.

An unknown key or a wrong type stops start-up with the key path and the reason. Each plugin's
section is decoded later, against that plugin's own ``PluginOptions`` (see ``plugin_manager``).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import msgspec.inspect
from loom.sdk.config import EnvSecret, ModelConfig
from loom.sdk.errors import ConfigError
from loom.sdk.suggest import did_you_mean
from msgspec import Meta, Struct, field

from .storage.config import StorageConfig

#: The default shipped as package data: ``daemon/plugins.toml`` links to the root ``plugins.toml``
#: in a checkout and is a copy of it in a wheel. The user's own config is ``config_file.user_config_path()``.
DEFAULT_CONFIG = Path(__file__).resolve().parent / "plugins.toml"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


#: What a key may do: ``user`` keys reach /v1, ``admin`` keys /admin too.
Role = Literal["user", "admin"]


class ApiKey(Struct, forbid_unknown_fields=True, frozen=True):
    key: EnvSecret
    role: Role = "user"
    #: The principal the key belongs to (what it makes is owned by that name; several keys may
    #: share one). Empty: ``name``, else one derived from a digest of the key.
    principal: Annotated[str, Meta(max_length=200)] = ""
    name: Annotated[str, Meta(max_length=200)] = ""


#: Algorithms ``[daemon.jwt]`` may check tokens with (one is chosen; ``none`` is never one).
JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"]


class JwtConfig(Struct, forbid_unknown_fields=True, frozen=True):
    """``[daemon.jwt]``: JWT bearer tokens as credentials besides the static keys
    (:mod:`loom.daemon.jwts`)."""

    #: The one algorithm tokens are signed with.
    algorithm: JwtAlgorithm = "HS256"
    #: HS*: the shared secret, from the environment (``{ env = "LOOM_JWT_SECRET" }``).
    secret: EnvSecret | None = None
    #: RS*/ES*/PS*: the signer's public keys, a JWKS file path or an http(s) URL.
    jwks: str = ""
    #: The ``aud`` a token must carry (empty: not checked).
    audience: str = ""
    #: The ``iss`` a token must carry (empty: not checked).
    issuer: str = ""
    #: The claim that gives the role: "admin" (or a list holding it) is an admin, anything else a user.
    role_claim: str = "loom_role"
    #: Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``.
    leeway: Annotated[float, Meta(ge=0, le=3600)] = 0.0


class Limits(Struct, forbid_unknown_fields=True, frozen=True):
    max_body_bytes: int = 32 * 2**20
    #: Queued requests per model before 429 (a model's ``max_queue`` overrides it).
    max_queue: int = 64
    #: Seconds a request may wait in a queue before 503.
    queue_timeout: float = 300.0


def _user_data_dir() -> str:
    """The platform's data dir for Loom (``~/.local/share/loom`` on Linux)."""
    import platformdirs

    return platformdirs.user_data_dir("loom", appauthor=False)


class ImageURLs(Struct, forbid_unknown_fields=True, frozen=True):
    """``[daemon.image_urls]``: how http(s) ``image_url`` parts of chat messages are fetched."""

    #: False refuses every http(s) image URL (data URIs still work).
    enabled: bool = True
    #: Fetch from loopback, link-local, private and other non-public addresses too. Off, such a
    #: URL (or a redirect to one) is refused: a client must not reach the daemon's own network.
    allow_private: bool = False
    max_bytes: int = 20 * 2**20
    #: Seconds for the whole fetch, redirects included.
    timeout: float = 10.0
    max_redirects: int = 3


class Cors(Struct, forbid_unknown_fields=True, frozen=True):
    """``[daemon.cors]``: browsers on these origins may call the API (off while empty)."""

    #: Exact origins, e.g. ["https://app.example.com", "http://localhost:3000"]; "*" for any.
    origins: list[str] = field(default_factory=list)
    #: Seconds a browser may cache a preflight answer.
    max_age: int = 600


class QuotaOverride(Struct, forbid_unknown_fields=True, frozen=True):
    """One principal's own limits in ``[daemon.quotas.principals.<name>]`` (unset: the default)."""

    requests_per_minute: Annotated[int, Meta(ge=0)] | None = None
    tokens_per_minute: Annotated[int, Meta(ge=0)] | None = None
    max_concurrent: Annotated[int, Meta(ge=0)] | None = None


class QuotasConfig(Struct, forbid_unknown_fields=True, frozen=True):
    """``[daemon.quotas]``: per-principal limits on the requests that make work (every POST under
    /v1 and /api), 0 for none (:mod:`loom.daemon.quotas`)."""

    #: Such requests a principal may start in any 60 seconds.
    requests_per_minute: Annotated[int, Meta(ge=0)] = 0
    #: Tokens (prompt and completion, as the models report them) a principal's requests may use
    #: in any 60 seconds; a request is refused while the window holds this many.
    tokens_per_minute: Annotated[int, Meta(ge=0)] = 0
    #: Such requests of a principal in flight at once (a stream counts until it ends).
    max_concurrent: Annotated[int, Meta(ge=0)] = 0
    #: Per principal (by name) overrides.
    principals: dict[str, QuotaOverride] = field(default_factory=dict)


class Tracing(Struct, forbid_unknown_fields=True, frozen=True):
    """``[daemon.tracing]``: OpenTelemetry traces over OTLP/HTTP (the ``otel`` extra); off while
    ``otlp_endpoint`` is empty and no ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set."""

    #: The collector's OTLP/HTTP address, e.g. "http://localhost:4318" (``/v1/traces`` is added).
    otlp_endpoint: str = ""
    #: The ``service.name`` the spans carry.
    service_name: str = "loom"


class DaemonConfig(Struct, forbid_unknown_fields=True, frozen=True):
    host: str = "127.0.0.1"
    port: int = 11435
    data_dir: str = field(default_factory=_user_data_dir)
    api_keys: list[ApiKey] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: "strict" refuses an optional parameter the serving model cannot honour (400 naming it);
    #: "lenient" leaves it out and names it in the ``x-loom-ignored`` response header.
    compat: Literal["strict", "lenient"] = "strict"
    image_urls: ImageURLs = field(default_factory=ImageURLs)
    #: On SIGTERM, how long calls in flight get to finish before they are cut ("30s"); a second
    #: SIGTERM (or Ctrl-C) ends the wait at once. The stores are flushed either way.
    shutdown_grace: str | int | float = "30s"
    cors: Cors = field(default_factory=Cors)
    #: JWT bearer tokens (off unless configured).
    jwt: JwtConfig | None = None
    #: Per-principal request quotas (off unless configured).
    quotas: QuotasConfig = field(default_factory=QuotasConfig)
    tracing: Tracing = field(default_factory=Tracing)


class DeviceBudget(Struct, forbid_unknown_fields=True, frozen=True):
    """Memory budget for one device: ``budget`` as "8GB" or "90%" of total, minus ``headroom``."""

    budget: str = "90%"
    headroom: str = "0"
    #: Different resident models may run side by side on this device.
    parallel: bool = False


class RayConfig(Struct, forbid_unknown_fields=True, frozen=True):
    """``[scheduler.ray]``: the Ray cluster models with ``executor = "ray"`` run on (docs/ray.md)."""

    #: "auto" (the cluster ``ray start`` made on this machine, or ``$RAY_ADDRESS``) or the head
    #: node's "HOST:PORT" (``loom serve --ray ADDRESS`` sets it).
    address: str = "auto"
    #: The Ray namespace Loom's actors live in.
    namespace: str = "loom"
    #: How long a new actor may wait for Ray to place it (its resources busy) before its load fails.
    place_timeout: str | int = "2m"
    #: How often the node list is read from Ray (a node that leaves is noticed within this).
    poll: str | int = "2s"


class SchedulerConfig(Struct, forbid_unknown_fields=True, frozen=True):
    devices: dict[str, DeviceBudget] = field(default_factory=dict)
    #: "affinity" (priority, then resident models first; eviction by reload cost), "priority"
    #: (arrival order within each priority, LRU eviction) or "fifo" (arrival order alone).
    policy: Literal["affinity", "priority", "fifo"] = "affinity"
    #: Seconds after which a queued item is served before any resident-model preference.
    max_age: float = 30.0
    #: How often keep-alive expiry is checked, seconds.
    keep_alive_interval: float = 1.0
    #: Where local models run: "subprocess" (one worker process per loaded model: a crash takes
    #: only that model down, and unloading ends the process), "inprocess" (threads of the
    #: daemon) or "ray" (an actor per loaded model on a Ray cluster, ``[scheduler.ray]``). A
    #: model's ``executor`` or its provider's preference overrides it.
    executor: Literal["inprocess", "subprocess", "ray"] = "subprocess"
    ray: RayConfig = field(default_factory=RayConfig)
    #: A call that produces nothing (result, chunk or progress) for this long is killed with its
    #: worker and fails with 504: "10m", "30s", or "never" / -1 / 0 for no limit.
    call_timeout: str | int = "10m"


class Routes(Struct, forbid_unknown_fields=True, frozen=True):
    """Default model per role, used when a pipeline or an image-bearing chat names none.

    ``score``, ``describe`` and ``judge`` are the three uses of a vision model that pipelines
    name apart (CLIP + aesthetic scoring, captioning, comparing two images in a chat), since one
    local model rarely does all three; each falls back to ``vision`` when unset.
    """

    chat: str | None = None
    embedding: str | None = None
    image: str | None = None
    vision: str | None = None
    translation: str | None = None
    rerank: str | None = None
    score: str | None = None
    describe: str | None = None
    judge: str | None = None


#: Pipeline roles that are uses of a capability: role -> (capability, the route it falls back to).
VISION_ROLES = {"score": "vision", "describe": "vision", "judge": "vision"}


class JobsConfig(Struct, forbid_unknown_fields=True, frozen=True):
    """Durable jobs. What a user generated is kept: ``retention`` ("never" by default) may delete
    finished jobs older than it, with their folders, every ``cleanup_interval``."""

    retention: str | int = "never"  # e.g. "30d"; "never" / -1 keeps everything
    cleanup_interval: str | int = "1h"
    #: What retention (and ``loom jobs prune``) does with a removed job's retrieval entries.
    rag: Literal["keep", "delete"] = "keep"
    #: Jobs a crash or a stop left ``interrupted`` are resumed when the daemon starts (a job
    #: that was started with a per-request upstream key is not: the key is gone; see docs/beam-search.md).
    resume_interrupted: bool = True
    #: ... unless the job has already been run this many times (it may be what stopped the daemon).
    resume_limit: int = 3
    #: SQLite ``synchronous`` for every store (jobs, records, responses, retrieval): "normal"
    #: survives a daemon crash or kill, "full" a power cut too (see ``loom.daemon.durability``).
    durability: Literal["normal", "full"] = "normal"
    #: Jobs that run at once, all pipelines together; the rest wait ``queued`` (by priority, then
    #: age). "auto": twice the slots of the configured models (a remote one counts as at most
    #: 16), at least 2 and at most 64: enough to keep every model busy, not so many that their
    #: calls only wait in the models' queues.
    max_running: Annotated[int, Meta(ge=1)] | Literal["auto"] = "auto"
    #: Jobs of one pipeline that run at once: "auto" is three quarters of ``max_running`` (at
    #: least 1), so a burst of one pipeline leaves room for the jobs of others.
    max_running_per_pipeline: Annotated[int, Meta(ge=1)] | Literal["auto"] = "auto"
    #: Per-pipeline overrides of ``max_running_per_pipeline``: ``{ beam_search = 2 }``.
    pipelines: dict[str, Annotated[int, Meta(ge=1)]] = field(default_factory=dict)
    #: Queued jobs (accepted, not yet running) before a submission is answered 429 with
    #: Retry-After, all owners together ...
    max_queued: Annotated[int, Meta(ge=1)] = 10_000
    #: ... and per owner (an API key; with no keys configured, every client is one owner).
    max_queued_per_owner: Annotated[int, Meta(ge=1)] = 5_000


class Config(Struct, forbid_unknown_fields=True, frozen=True):
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    routes: Routes = field(default_factory=Routes)
    storage: StorageConfig = field(default_factory=StorageConfig)
    #: ``[plugins.NAME]`` tables: ``enabled`` plus the plugin's own options.
    plugins: dict[str, dict] = field(default_factory=dict)
    models: list[ModelConfig] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return Path(os.path.expanduser(self.daemon.data_dir))


def load_config(path: str | os.PathLike | None = None, **overrides) -> Config:
    """Read and decode the config; ``path`` falls back to ``LOOM_CONFIG`` then the user config
    (``config_file.ensure_config`` writes that one on first run; this only reads).

    ``overrides`` are ``host``, ``port`` and ``data_dir`` from the command line (None = keep),
    and ``ray``: a Ray cluster's address (``loom serve --ray``), which makes ``ray`` the executor.
    """
    from .config_file import config_path, user_config_path

    path = config_path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        user = user_config_path()
        where = f"the user config is {user}" + ("" if user.exists() else ", written by `loom serve` on its first run")
        raise ConfigError(
            f"config file not found: {path} ({where}; Loom's default is `loom/daemon/plugins.toml`)"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    ray = overrides.pop("ray", None)
    if ray is not None:
        scheduler = raw.setdefault("scheduler", {})
        scheduler["executor"] = "ray"
        scheduler.setdefault("ray", {})["address"] = ray
    config = decode_config(raw, str(path))  # the file as written: an override does not hide its errors
    if any(value is not None for value in overrides.values()):
        daemon = raw.setdefault("daemon", {})
        for key, value in overrides.items():
            if value is not None:
                daemon[key] = value
        config = decode_config(raw, f"{path} with the command line's options")
    check_config(config)
    return config


def decode_config(raw: dict, source: str = "config") -> Config:
    try:
        return msgspec.convert(raw, Config, strict=True)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{source}: {explain(e, raw)}") from None


def explain(error: msgspec.ValidationError, raw: dict) -> str:
    """msgspec's message for a config, for a person: a ``[[models]]`` entry named by its id rather
    than ``$.models[0]``, and the nearest key for an unknown one (``prot`` → ``port``)."""
    message = str(error)
    text, _, at = message.partition(" - at `")
    path = at.rstrip("`") or "$"
    hint = ""
    if text.startswith("Object contains unknown field"):
        field = text.split("`")[1]
        hint = did_you_mean(field, _keys_at(Config, path)) or ""
    return f"{text}{hint} - at `{path}`{_which_model(path, raw)}"


def _which_model(path: str, raw: dict) -> str:
    """`` (the [[models]] entry with id = 'x')`` for a path inside one, else ``""``."""
    match = re.match(r"\$\.models\[(\d+)\]", path)
    models = raw.get("models")
    if match and isinstance(models, list) and int(match[1]) < len(models):
        entry = models[int(match[1])]
        model_id = entry.get("id") if isinstance(entry, dict) else None
        if isinstance(model_id, str):
            return f" (the [[models]] entry with id = {model_id!r})"
    return ""


def _keys_at(root: type, path: str) -> list[str]:
    """The keys the config accepts at ``path`` (``$.daemon``, ``$.models[0].options``)."""
    info: msgspec.inspect.Type = msgspec.inspect.type_info(root)
    for token in re.findall(r"\.([A-Za-z_][\w-]*)|\[\d+\]", path):
        info = _unwrap(info)
        if token == "":  # an index: the list's items
            if isinstance(info, msgspec.inspect.ListType):
                info = info.item_type
            continue
        if isinstance(info, msgspec.inspect.StructType):
            found = next((f for f in info.fields if f.encode_name == token), None)
            if found is None:
                return []
            info = found.type
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        else:
            return []
    info = _unwrap(info)
    return [f.encode_name for f in info.fields] if isinstance(info, msgspec.inspect.StructType) else []


def _unwrap(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    if isinstance(info, msgspec.inspect.UnionType):
        structs = [t for t in info.types if isinstance(t, (msgspec.inspect.StructType, msgspec.inspect.ListType))]
        return structs[0] if structs else info
    return info


def check_config(config: Config) -> None:
    """Checks that span fields: secrets resolve, keys guard any non-loopback bind."""
    for i, api_key in enumerate(config.daemon.api_keys):
        api_key.key.resolve(f"$.daemon.api_keys[{i}]")
    if config.daemon.host not in LOOPBACK and not config.daemon.api_keys and config.daemon.jwt is None:
        raise ConfigError(
            f"refusing to bind to {config.daemon.host} without an API key: add [[daemon.api_keys]] "
            "(or [daemon.jwt]) or bind to 127.0.0.1"
        )
    for name, device in config.scheduler.devices.items():
        parse_size(device.budget, f"$.scheduler.devices.{name}.budget", allow_percent=True)
        parse_size(device.headroom, f"$.scheduler.devices.{name}.headroom")
    parse_duration(config.scheduler.call_timeout, "$.scheduler.call_timeout")
    parse_duration(config.scheduler.ray.place_timeout, "$.scheduler.ray.place_timeout")
    parse_duration(config.scheduler.ray.poll, "$.scheduler.ray.poll")
    if config.scheduler.ray.address.strip().lower().startswith("ray://"):
        # Ray Client proxies a driver's calls; the daemon must be a driver on a node itself.
        raise ConfigError(
            "$.scheduler.ray.address: Ray Client (ray://) is not supported; run Loom on a machine of the "
            "cluster and give the head's HOST:PORT, or 'auto' (docs/ray.md)"
        )
    parse_duration(config.jobs.retention, "$.jobs.retention")
    parse_duration(config.jobs.cleanup_interval, "$.jobs.cleanup_interval")
    parse_duration(config.daemon.shutdown_grace, "$.daemon.shutdown_grace")
    parse_duration(config.storage.url_ttl, "$.storage.url_ttl")
    parse_duration(config.storage.timeout, "$.storage.timeout")
    for i, model in enumerate(config.models):
        parse_duration(model.keep_alive, f"$.models[{i}].keep_alive")
        if model.vram is not None:
            parse_size(model.vram, f"$.models[{i}].vram")


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]i?b?|b)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_size(text: str, where: str = "size", *, allow_percent: bool = False, total: int = 0):
    """ "8GB", "512MiB", "1.5g" -> bytes; "90%" -> that share of ``total`` when allowed."""
    text = str(text).strip()
    if allow_percent and text.endswith("%"):
        try:
            share = float(text[:-1]) / 100
        except ValueError:
            raise ConfigError(f"{where}: not a percentage: {text!r}") from None
        if not 0 < share <= 1:
            raise ConfigError(f"{where}: percentage must be in (0, 100]: {text!r}")
        return int(total * share)
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"{where}: not a size like '8GB' or '512MiB': {text!r}")
    number, unit = float(m.group(1)), (m.group(2) or "").lower()
    binary = "i" in unit
    base = unit[:1] if unit not in ("b", "") else ""
    factor = 1024 ** "bkmgt".index(base) if binary and base else _UNITS[base]
    return int(number * factor)


_DURATION = re.compile(r"^\s*(-?[0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: str | int | float, where: str = "duration") -> float | None:
    """ "5m" -> 300.0; 0 -> 0.0 (unload right after use); -1 or "never" -> None (keep forever)."""
    if isinstance(value, (int, float)):
        return None if value < 0 else float(value)
    if value.strip().lower() in ("never", "forever", "-1"):
        return None
    m = _DURATION.match(value)
    if not m:
        raise ConfigError(f"{where}: not a duration like '30s', '5m' or '1h': {value!r}")
    number = float(m.group(1))
    if number < 0:
        return None
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]
