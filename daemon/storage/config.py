"""``[storage]``: where outputs go besides the data dir, and how long the URLs handed out last."""

from __future__ import annotations

from typing import Literal

from msgspec import Struct


class StorageConfig(Struct, forbid_unknown_fields=True, frozen=True):
    """``[storage]`` (docs/storage.md).

    ``backend = "local"`` keeps outputs in the data dir only; ``"s3"`` also writes every generated
    image and job artefact to an S3-compatible bucket and hands out presigned URLs to it. The data
    dir stays the working copy either way (pipelines read artefacts back, resume needs them).
    Credentials are never in the config: boto3 reads them from the environment
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ...).
    """

    backend: Literal["local", "s3"] = "local"
    #: How long a file URL in an answer stays valid: a signed ``/v1/files/...`` URL, or a
    #: presigned S3 URL ("1h"; seed 003 uses "60s").
    url_ttl: str | int | float = "1h"
    #: The bucket (``backend = "s3"``).
    bucket: str = ""
    #: Prepended to every object key ("loom/" puts ``images/x.png`` at ``loom/images/x.png``).
    prefix: str = ""
    #: An S3-compatible endpoint (MinIO, Ceph, R2, moto); None for AWS itself.
    endpoint_url: str | None = None
    #: The bucket's region; None for boto3's own default (``AWS_DEFAULT_REGION``).
    region: str | None = None
    #: "path" (``endpoint/bucket/key``: most self-hosted stores), "virtual" or "auto".
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    #: Connect and read timeout of one request to the store; with ``attempts`` it bounds how long
    #: an unreachable store takes to fail a write.
    timeout: str | int | float = "10s"
    #: Tries per write (the first included) before it fails with ``storage_error``.
    attempts: int = 3
