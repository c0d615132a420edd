"""Testing pipelines without a daemon: a fake :class:`PipelineContext` and declaration checks.

``FakePipelineContext`` answers model calls from queues (llm's MockModel is the model), records
every call, event and artefact, stores step results the way the job runner does (JSON-encoded),
and can ``resume()``: the copy shares the stored steps, so a test can check that a re-run after an
interruption does not redo finished work. Retrieval (``rag_add`` / ``rag_search``) is an exact
in-memory search and records live in a dict; both are shared with the resumed copy and can be
inspected (``rag``, ``records``) or filled before a run.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import posixpath
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from ..errors import Cancelled, CapabilityNotSupported, InvalidRequest, NotFound
from ..pipelines import PipelineContext
from ..protocols import ImageJob, VisionScores
from ..types import Capability, ChatCompletionRequest
from .images import make_png

T = TypeVar("T")
#: Roles that are uses of a vision model; their routes fall back to "vision" (as the daemon's).
VISION_USES = ("score", "describe", "judge")
#: Artefact names the daemon accepts: a plain file name, optionally one folder deep.
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")
Reply = str | Callable[[str, list[dict], dict], str]


class FakePipelineContext(PipelineContext):
    """A PipelineContext for unit tests: queued chat replies, tiny PNGs, everything recorded."""

    def __init__(
        self,
        *,
        replies: list[Reply] | None = None,
        default_reply: str = "A fake reply.",
        routes: dict[str, str] | None = None,
        job_id: str = "job-test",
        output_dir: str = "output/test/ses-000000-test",
        person: Callable[[str, dict, dict], dict | None] | None = None,
        capabilities: dict[str, set[str]] | None = None,
    ) -> None:
        self.job_id = job_id
        #: model -> the capabilities it has, for ``model_for(role, requested)`` to check as the
        #: daemon does; a model not listed (or no table at all) can do anything.
        self.capabilities = {m: set(c) for m, c in (capabilities or {}).items()}
        self.output_dir = output_dir
        self.replies: list[Reply] = list(replies or [])
        self.default_reply = default_reply
        self.routes = dict(routes or {})
        #: (method, arguments) of every model call, in order.
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        #: What the pipeline set with ``set_metadata`` (merged).
        self.metadata: dict[str, Any] = {}
        self.progress_log: list[tuple[float, str, str]] = []
        #: step key -> JSON-encoded result; shared with contexts made by :meth:`resume`.
        self.steps: dict[str, bytes] = {}
        #: Keys of the steps whose function ran in this context (not answered from the store).
        self.ran_steps: list[str] = []
        self.artifacts: dict[str, bytes] = {}
        self.artifact_meta: dict[str, dict[str, Any]] = {}
        #: (collection, model) -> [(unit vector, item)]: what ``rag_add`` stored.
        self.rag: dict[tuple[str, str], list[tuple[list[float], dict[str, Any]]]] = {}
        #: (collection, normalised key) -> record: what ``record_upsert`` stored.
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        #: Plays the person ``ask_preference`` asks: ``person(prompt, a, b)`` returns
        #: ``{"winner": "a" | "b" | None, "reason"}``, or None for nobody answering in time
        #: (the default). Every question asked is kept in ``questions`` as (prompt, a, b, timeout).
        self.person = person
        self.questions: list[tuple[str, dict, dict, float]] = []
        self._seen_steps: set[str] = set()
        self._cancelled = False

    # --- durability ---------------------------------------------------------------------------

    async def step(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        self.check()
        if key in self._seen_steps:
            # The daemon would hand the second call the first one's stored result: a silent bug.
            raise AssertionError(f"step key {key!r} used twice in one run; step keys must be unique")
        self._seen_steps.add(key)
        if key in self.steps:
            return msgspec.json.decode(self.steps[key])
        result = await fn()
        try:
            self.steps[key] = msgspec.json.encode(result)
        except (TypeError, msgspec.EncodeError) as e:
            kind = type(result).__name__
            raise AssertionError(f"step {key!r} returned {kind}, which is not JSON-encodable: {e}") from e
        self.ran_steps.append(key)
        # What a resumed run would get back: tests see the same types on both paths.
        return msgspec.json.decode(self.steps[key])

    def resume(self) -> FakePipelineContext:
        """A context for re-running the job after an interruption: same steps, artefacts, queues."""
        again = FakePipelineContext(
            default_reply=self.default_reply,
            routes=self.routes,
            job_id=self.job_id,
            output_dir=self.output_dir,
            person=self.person,
            capabilities=self.capabilities,
        )
        again.replies, again.steps, again.artifacts, again.artifact_meta = (
            self.replies,
            self.steps,
            self.artifacts,
            self.artifact_meta,
        )
        again.rag, again.records, again.metadata = self.rag, self.records, self.metadata
        return again

    # --- reporting ----------------------------------------------------------------------------

    def _progress(self, percent: float, stage: str, message: str) -> None:
        if not 0.0 <= percent <= 100.0:
            raise AssertionError(f"progress percent must be within 0-100, got {percent}")
        self.progress_log.append((percent, stage, message))

    def emit(self, type: str, data: dict[str, Any]) -> None:
        msgspec.json.encode(data)  # events go to listeners as JSON
        self.events.append((type, data))

    def set_metadata(self, fields: dict[str, Any]) -> None:
        msgspec.json.encode(fields)  # written into metadata.json as JSON
        self.metadata.update(fields)

    def cancel(self) -> None:
        self._cancelled = True

    def check(self) -> None:
        if self._cancelled:
            raise Cancelled("cancelled")

    # --- artefacts ----------------------------------------------------------------------------

    def _save_artifact(self, name: str, data: bytes, meta: dict[str, Any] | None) -> str:
        if not ARTIFACT_NAME.match(name) or ".." in name:
            raise InvalidRequest(f"artifact name {name!r} must be a plain file name (optionally one folder deep)")
        if not isinstance(data, (bytes, bytearray)):
            raise AssertionError(f"save_artifact({name!r}) needs bytes, got {type(data).__name__}")
        path = posixpath.join(self.output_dir, name)
        self.artifacts[path] = bytes(data)
        self.artifact_meta[path] = dict(meta or {})
        return path

    def read_artifact(self, path: str) -> bytes:
        try:
            return self.artifacts[path]
        except KeyError:
            raise NotFound(f"no artifact {path!r}") from None

    def keep_artifact(self, path: str, folder: str) -> str:
        if not re.match(r"^[a-z][a-z0-9_-]{0,63}$", folder):
            raise InvalidRequest(f"folder {folder!r} must be lowercase letters, digits, '-' or '_'")
        data = self.read_artifact(path)
        kept = f"images/{folder}/{self.job_id}-{posixpath.basename(path)}"
        self.artifacts[kept] = data
        return kept

    # --- retrieval and records ------------------------------------------------------------------

    async def _rag_add(self, collection: str, vector: list[float], model: str, item: dict[str, Any]) -> dict[str, Any]:
        self.check()
        kind, text, path, meta = item["kind"], item["text"], item["path"], item["meta"]
        if kind not in ("text", "image"):
            raise InvalidRequest(f"kind must be text or image, got {kind!r}")
        items = self.rag.setdefault((collection, model), [])
        if items and len(items[0][0]) != len(vector):
            raise InvalidRequest(
                f"index {collection!r} holds {len(items[0][0])}-dimensional vectors; got {len(vector)}"
            )
        item_id = sum(len(v) for v in self.rag.values()) + 1
        item = {
            "id": item_id,
            "collection": collection,
            "model": model,
            "kind": kind,
            "text": text,
            "path": path,
            "url": f"/v1/files/{path}" if path else None,
            "meta": dict(meta or {}),
            "job_id": self.job_id,
            "pipeline": "test",
            "created_at": 0.0,
        }
        msgspec.json.encode(item)  # what the daemon stores must be JSON
        items.append((_unit(vector), item))
        return {"id": item_id, "collection": collection, "model": model, "count": len(items)}

    async def _rag_search(self, collection: str, vector: list[float], model: str, k: int) -> list[dict[str, Any]]:
        self.check()
        q = _unit(vector)
        scored = [
            {**item, "score": round(sum(a * b for a, b in zip(q, v)), 6)}
            for v, item in self.rag.get((collection, model), [])
        ]
        return sorted(scored, key=lambda h: -h["score"])[:k]

    def record_get(self, collection: str, key: str) -> dict[str, Any] | None:
        record = self.records.get((collection, _key(key)))
        return msgspec.json.decode(msgspec.json.encode(record)) if record else None

    def _record_upsert(
        self, collection: str, key: str, fields: dict[str, Any] | None, append: dict[str, list[Any]] | None
    ) -> dict[str, Any]:
        norm = _key(key)
        if not norm:
            raise InvalidRequest("record key must not be empty", param="key")
        existing = self.records.get((collection, norm))
        data = dict(existing["data"]) if existing else {}
        data.update(fields or {})
        for name, items in (append or {}).items():
            current = list(data.get(name) or [])
            current.extend(item for item in items if item not in current)
            data[name] = current
        record = {"collection": collection, "key": norm, "data": data, "created_at": 0.0, "updated_at": 0.0}
        msgspec.json.encode(record)
        self.records[(collection, norm)] = record
        return {**msgspec.json.decode(msgspec.json.encode(record)), "created": existing is None}

    # --- a person in the loop -----------------------------------------------------------------

    async def ask_preference(
        self, prompt: str, a: dict[str, Any], b: dict[str, Any], *, timeout: float
    ) -> dict[str, Any] | None:
        self.check()
        if not timeout > 0:
            raise InvalidRequest(f"a question needs a positive timeout, got {timeout!r}")
        for side in (a, b):
            if not isinstance(side.get("image"), str):
                raise AssertionError(f"ask_preference needs each side's artefact path as 'image', got {side!r}")
        self.questions.append((prompt, dict(a), dict(b), timeout))
        answer = self.person(prompt, a, b) if self.person is not None else None
        if answer is None:
            return None
        if answer.get("winner") not in ("a", "b", None):
            raise AssertionError(f"person() must answer winner 'a', 'b' or None, got {answer!r}")
        n = len(self.questions)
        return {"winner": answer.get("winner"), "reason": answer.get("reason", ""), "evaluation_id": f"ev_fake{n}"}

    # --- models -------------------------------------------------------------------------------

    def _model_for(self, role: str, requested: str | None) -> str:
        if role not in VISION_USES:
            try:
                Capability(role)
            except ValueError:
                roles = ", ".join([*(c.value for c in Capability), *VISION_USES])
                raise InvalidRequest(f"unknown model role {role!r} (roles: {roles})") from None
        fallback = self.routes.get("vision") if role in VISION_USES else None
        if requested and requested in self.capabilities:
            capability = "vision" if role in VISION_USES else role
            if capability not in self.capabilities[requested]:
                raise CapabilityNotSupported(f"The model '{requested}' does not support {capability}", param="model")
        return requested or self.routes.get(role) or fallback or f"fake-{role}"

    async def chat(self, model: str, messages: list[dict], **params: Any) -> str:
        self.check()
        try:  # the daemon decodes the same way: a misspelt parameter fails here as it would there
            msgspec.convert({"model": model, "messages": messages, **params}, ChatCompletionRequest)
        except msgspec.ValidationError as e:
            raise InvalidRequest(f"invalid chat request from pipeline: {e}") from None
        self.calls.append(("chat", {"model": model, "messages": messages, **params}))
        reply = self.replies.pop(0) if self.replies else self.default_reply
        if callable(reply):
            reply = reply(model, messages, params)
            if inspect.isawaitable(reply):
                reply = await reply
        return reply

    async def _generate_image(self, model: str, job: ImageJob) -> bytes:
        self.check()
        fields = ("prompt", "width", "height", "seed", "steps", "negative_prompt", "init_image", "mask", "strength")
        self.calls.append(("generate_image", {"model": model, **{f: getattr(job, f) for f in fields}}))
        return make_png(job.width, job.height, seed=_number(job.prompt, job.seed))

    async def _describe(self, model: str, image: bytes, prompt: str | None, detail: str) -> str:
        self.check()
        self.calls.append(("describe", {"model": model, "image": image, "prompt": prompt, "detail": detail}))
        return "A fake description of the image."

    async def score(self, model: str, image: bytes, text: str) -> VisionScores:
        self.check()
        self.calls.append(("score", {"model": model, "image": image, "text": text}))
        return VisionScores(clip=0.25 + (_number(text) % 50) / 100, aesthetic=5.0)

    async def translate(self, model: str, texts: list[str], source: str, target: str) -> list[str]:
        self.check()
        self.calls.append(("translate", {"model": model, "texts": texts, "source": source, "target": target}))
        return [f"[{target}] {t}" for t in texts]

    async def embed(self, model: str, inputs: list[str]) -> list[list[float]]:
        self.check()
        self.calls.append(("embed", {"model": model, "inputs": inputs}))
        vectors = []
        for text in inputs:
            raw = [b - 127.5 for b in hashlib.sha256(text.encode()).digest()[:16]]
            norm = math.sqrt(sum(x * x for x in raw)) or 1.0
            vectors.append([x / norm for x in raw])
        return vectors

    async def rerank(self, model: str, query: str, documents: list[str]) -> list[float]:
        """The share of the query's words each document holds (as the mock reranker scores)."""
        self.check()
        self.calls.append(("rerank", {"model": model, "query": query, "documents": documents}))
        wanted = set(re.findall(r"\w+", query.lower()))
        return [len(wanted & set(re.findall(r"\w+", d.lower()))) / (len(wanted) or 1) for d in documents]

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == method]


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _key(key: str) -> str:
    return " ".join(str(key).split()).casefold()


def _number(text: str, seed: int | None = None) -> int:
    return int.from_bytes(hashlib.sha256(f"{text}|{seed}".encode()).digest()[:4], "big")


def pipeline_problems(pipeline_cls: type, plugin: Any = None) -> list[str]:
    """What is wrong with a pipeline class (and, given, the plugin that registers it); [] if nothing."""
    problems: list[str] = []
    name = getattr(pipeline_cls, "name", None)
    if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
        problems.append(f"name must be a URL-safe string (POST /v1/pipelines/{{name}}), got {name!r}")
    params = getattr(pipeline_cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, msgspec.Struct)):
        problems.append(f"Params must be a msgspec.Struct class, got {params!r}")
    else:
        if not params.__struct_config__.forbid_unknown_fields:
            problems.append("Params must be declared with forbid_unknown_fields=True (requests are decoded strictly)")
        try:
            msgspec.json.schema(params)
        except Exception as e:  # msgspec raises TypeError for types it cannot describe
            problems.append(f"Params has no JSON schema (GET /v1/pipelines publishes it): {e}")
    if not inspect.iscoroutinefunction(getattr(pipeline_cls, "run", None)):
        problems.append("run(self, params, ctx) must be an async def")
    description = getattr(pipeline_cls, "description", "")
    if not isinstance(description, str) or not description.strip():
        problems.append("description should say in a line what the pipeline does (GET /v1/pipelines lists it)")
    if plugin is not None:
        import pluggy

        from .. import hookspecs

        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        pm.register(plugin, name="under-test")
        pm.check_pending()
        registered: list[Any] = []
        for impl in pm.hook.register_pipelines.get_hookimpls():
            impl.function(**({"register": registered.append} if "register" in impl.argnames else {}))
        if pipeline_cls not in registered:
            problems.append(f"register_pipelines of {getattr(plugin, '__name__', plugin)!r} does not register it")
    return problems
