"""Everything a chat request goes through before a model sees it, for every dialect alike (Chat
Completions, the Responses and Messages APIs, Ollama's): the cross-field rules, the route
(image-bearing chats go to a vision model) resolved once into the chain of models that may serve
it, image URLs fetched into data URIs (so no provider fetches anything itself), and the parameter
policy, applied to each model of the chain as it is tried (:meth:`Prepared.fitted`). One
:class:`ChatIntake` per app, built with the services; handlers ask for it as
``intake: NamedDependency[ChatIntake]``."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import msgspec
from loom.sdk.errors import CapabilityNotSupported
from loom.sdk.types import Capability, ChatCompletionRequest, ImagePart, ImageURL, UserMessage

from ..config import Routes
from ..files import FileStore
from ..image_fetch import ImageFetcher
from ..media import check_image
from ..models import ModelEntry, ModelRegistry
from ..routing import ModelRouter
from .param_policy import apply_policy
from .rules import check_chat

#: The model a chat request names (resolved) and the capability it is routed by.
Route = tuple[ModelEntry, Capability]
_FILES = "/v1/files/"


@dataclass
class Prepared:
    """A chat request checked and routed, not yet fitted to a model."""

    #: The models that may serve it, in the order they are tried (:meth:`ModelRouter.chain`).
    chain: list[ModelEntry]
    request: ChatCompletionRequest
    compat: str
    shown: Callable[[str], str]
    _fitted: dict[str, tuple[ChatCompletionRequest, list[str]]] = field(default_factory=dict, repr=False)

    def fitted(self, entry: ModelEntry) -> ChatCompletionRequest:
        """The request as ``entry`` is sent it: the parameter policy of its own provider applied.
        A parameter it does not honour is refused by name (strict), or left out (lenient) and
        named by :meth:`ignored`; a fallback is held to its own provider's list, not the first's."""
        if entry.id not in self._fitted:
            self._fitted[entry.id] = apply_policy(self.request, entry, self.compat, self.shown)
        return self._fitted[entry.id][0]

    def ignored(self, entry: ModelEntry) -> list[str]:
        """Client-facing names of the parameters left out for ``entry`` (``compat = "lenient"``)."""
        self.fitted(entry)
        return self._fitted[entry.id][1]


def _image_param(i: int, j: int) -> str:
    return f"messages[{i}].content[{j}].image_url.url"


class ChatIntake:
    def __init__(
        self,
        registry: ModelRegistry,
        router: ModelRouter,
        routes: Routes,
        files: FileStore,
        fetcher: ImageFetcher,
        compat: str,
    ) -> None:
        self.registry, self.router, self.routes, self.files = registry, router, routes, files
        self.fetcher, self.compat = fetcher, compat

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    def route(self, req: ChatCompletionRequest) -> Route:
        """The model name and capability to route by; image parts go to a vision-capable chat model."""
        if not req.has_images():
            return self.registry.for_capability(req.model, Capability.CHAT), Capability.CHAT
        entry = self.registry.get(req.model)
        if {Capability.VISION, Capability.CHAT} <= entry.capabilities:
            return entry, Capability.VISION
        route = self.router.route_for(Capability.VISION, self.routes.vision)
        if route is not None:
            vision = self.registry.get(route)
            if {Capability.VISION, Capability.CHAT} <= vision.capabilities:
                return vision, Capability.VISION
        raise CapabilityNotSupported(
            f"The model '{req.model}' cannot read images and no vision chat model is routed",
            param="messages",
        )

    async def prepare(
        self,
        req: ChatCompletionRequest,
        *,
        own_host: str | None,
        shown: Callable[[str], str] = lambda name: name,
        image_param: Callable[[int, int], str] = _image_param,
    ) -> Prepared:
        """Check, route and complete ``req``. ``own_host`` is the Host the client reached this
        daemon by: image URLs of its own ``/v1/files/`` are read from disk instead of fetched.
        ``shown`` names a parameter the way the client's API does, ``image_param`` an image."""
        check_chat(req)
        chain = self.router.chain(*self.route(req))
        if req.has_images():
            # Refused before anything is fetched when the first choice cannot honour it (strict);
            # each model is fitted again as it is tried (Prepared.fitted).
            apply_policy(req, chain[0], self.compat, shown)
            req = await self.fetch_images(req, own_host, image_param)
        return Prepared(chain, req, self.compat, shown)

    async def fetch_images(
        self, req: ChatCompletionRequest, own_host: str | None, image_param: Callable[[int, int], str]
    ) -> ChatCompletionRequest:
        """``req`` with every image URL replaced by a data URI of the fetched image."""
        wanted = [
            (i, j, part.image_url.url)
            for i, m in enumerate(req.messages)
            if isinstance(m, UserMessage) and isinstance(m.content, list)
            for j, part in enumerate(m.content)
            # Anything but a data URI is the daemon's to fetch (or refuse: other schemes are).
            if isinstance(part, ImagePart) and not part.image_url.url.startswith("data:")
        ]
        if not wanted:
            return req

        async def one(i: int, j: int, url: str) -> bytes:
            parts = urlsplit(url)
            if own_host is not None and parts.netloc == own_host and parts.path.startswith(_FILES):
                data = self.files.read_named(parts.path[len(_FILES) :], parts.query)  # the caller's to read
                check_image(data, image_param(i, j))
                return data
            return await self.fetcher.fetch(url, image_param(i, j))

        images = await asyncio.gather(*(one(i, j, url) for i, j, url in wanted))
        messages = list(req.messages)
        for (i, j, _), data in zip(wanted, images, strict=True):
            message = messages[i]
            assert isinstance(message, UserMessage) and isinstance(message.content, list)
            content = list(message.content)
            old = content[j]
            assert isinstance(old, ImagePart)
            content[j] = ImagePart(image_url=ImageURL(url=data_uri(data), detail=old.image_url.detail))
            messages[i] = msgspec.structs.replace(message, content=content)
        return msgspec.structs.replace(req, messages=messages)


def data_uri(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        kind = (img.format or "png").lower()
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"
