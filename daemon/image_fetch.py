"""Fetching the http(s) image URLs of chat messages, guarded against server-side request forgery.

A client must not use the daemon to reach what only the daemon can reach. So before each request
(the first and every redirect, which is followed by hand) the host is resolved and every address
is checked: loopback, link-local, private and other non-public addresses are refused unless
``[daemon.image_urls] allow_private`` is set. The connection then goes to the address that was
checked (the URL's host rides in the Host header and TLS SNI), so a second DNS answer cannot swap
in another one. The whole fetch has one deadline and a size limit, and what comes back must
decode as an image. Every refusal is an InvalidRequest (400) naming the URL and its problem.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx
from loom.sdk.errors import InvalidRequest

from .config import ImageURLs
from .media import check_image

CODE = "invalid_image_url"
_REDIRECTS = {301, 302, 303, 307, 308}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def refused(url: str, problem: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"image URL {_shown(url)}: {problem}", param=param, code=CODE)


def _shown(url: str) -> str:
    """The URL as it may appear in an error: no credentials, no query, at most 200 characters."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    text = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url
    return repr(text if len(text) <= 200 else text[:197] + "...")


def kind_of(address: Address) -> str | None:
    """Why ``address`` is not public ("loopback", "private", ...), or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return kind_of(address.ipv4_mapped)
    for kind in ("loopback", "unspecified", "link_local", "private", "multicast", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"


class ImageFetcher:
    """Fetches image URLs under the ``[daemon.image_urls]`` rules; one httpx client, reused."""

    def __init__(self, config: ImageURLs) -> None:
        self.config = config
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # Redirects are followed by hand (each target is checked); no proxies from the
            # environment: the check must apply to the host actually connected to.
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def fetch(self, url: str, param: str) -> bytes:
        """The image's bytes; raises InvalidRequest naming the URL's problem."""
        if not self.config.enabled:
            raise refused(url, "fetching image URLs is turned off ([daemon.image_urls] enabled = false)", param)
        try:
            async with asyncio.timeout(self.config.timeout):
                data = await self._follow(url, param)
        except TimeoutError:
            raise refused(url, f"not fetched within {self.config.timeout:g} s", param) from None
        check_image_or_refuse(data, url, param)
        return data

    async def _follow(self, url: str, param: str) -> bytes:
        for _hop in range(self.config.max_redirects + 1):
            response_or_next = await self._get(url, param)
            if isinstance(response_or_next, bytes):
                return response_or_next
            url = response_or_next
        raise refused(url, f"more than {self.config.max_redirects} redirects", param)

    async def _get(self, url: str, param: str) -> bytes | str:
        """One request: the body, or the URL a redirect points to."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise refused(url, "only http, https and data URLs are taken", param)
        host = parts.hostname
        if not host:
            raise refused(url, "the URL has no host", param)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise refused(url, "the URL's port is not a number from 0 to 65535", param) from None
        address = await self._checked_address(url, host, port, param)
        target = parts._replace(netloc=_netloc(address, parts.port)).geturl()
        headers = {"Host": parts.netloc.rpartition("@")[2], "Accept": "image/*"}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        request = self.client().build_request("GET", target, headers=headers, extensions=extensions)
        try:
            response = await self.client().send(request, stream=True)
        except httpx.HTTPError as e:
            raise refused(url, f"could not be fetched: {type(e).__name__}: {e}", param) from None
        try:
            if response.status_code in _REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise refused(url, f"answered {response.status_code} without a Location", param)
                return urljoin(url, location)
            if response.status_code != 200:
                raise refused(url, f"answered HTTP {response.status_code}", param)
            return await self._read(response, url, param)
        finally:
            await response.aclose()

    async def _read(self, response: httpx.Response, url: str, param: str) -> bytes:
        limit = self.config.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise refused(url, f"the image is {declared} bytes; the limit is {limit}", param)
        chunks, size = [], 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise refused(url, f"the image is over the limit of {limit} bytes", param)
                chunks.append(chunk)
        except httpx.HTTPError as e:
            raise refused(url, f"could not be read: {type(e).__name__}: {e}", param) from None
        return b"".join(chunks)

    async def _checked_address(self, url: str, host: str, port: int, param: str) -> Address:
        """The address to connect to, after checking every address the host resolves to."""
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as e:
                raise refused(url, f"the host {host!r} does not resolve ({e})", param) from None
            # (sockaddr[0] is the address string for the INET families a stream resolves to.)
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise refused(url, f"the host {host!r} does not resolve", param)
        if not self.config.allow_private:
            for address in addresses:
                kind = kind_of(address)
                if kind is not None:
                    where = f"{host} is" if str(address) == host else f"{host!r} resolves to {address},"
                    raise refused(
                        url,
                        f"{where} a {kind} address, and [daemon.image_urls] allow_private is off",
                        param,
                    )
        return addresses[0]


def _netloc(address: Address, port: int | None) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{host}:{port}" if port else host


def check_image_or_refuse(data: bytes, url: str, param: str) -> None:
    try:
        check_image(data, param)
    except InvalidRequest as e:
        raise refused(url, f"the content is not an image ({e.message})", param) from None
