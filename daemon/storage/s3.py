"""An S3-compatible bucket as the output store (``[storage] backend = "s3"``), through boto3.

Objects are written at ``<prefix><rel>`` (``rel`` is the file's data-dir-relative path, e.g.
``images/2026-12-07/ab12.png`` or ``output/2026-12-07/ses-.../persona.png``) with their media
type, and read back by browsers through presigned GET URLs. Credentials come from boto3's own
chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance role, ...),
never from Loom's config. boto3 is the optional extra ``loom-daemon[s3]``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from loom.sdk.errors import ConfigError, StorageError

from .config import StorageConfig

log = logging.getLogger("loom.storage")

#: SigV4 presigned URLs live at most a week.
MAX_TTL = 7 * 24 * 3600


class S3Store:
    def __init__(self, config: StorageConfig, timeout: float) -> None:
        try:
            import boto3
            from botocore.config import Config as BotoConfig
        except ImportError:
            raise ConfigError('[storage] backend = "s3" needs boto3: pip install "loom-daemon[s3]"') from None
        if not config.bucket:
            raise ConfigError('$.storage.bucket: backend = "s3" needs a bucket')
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.name = f"s3://{config.bucket}/{config.prefix}"
        session = boto3.session.Session(region_name=config.region)
        if session.get_credentials() is None:
            raise ConfigError(
                '[storage] backend = "s3": no credentials found; set AWS_ACCESS_KEY_ID and '
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the daemon's environment"
            )
        self._client: Any = session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            config=BotoConfig(
                signature_version="s3v4",
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": max(1, config.attempts), "mode": "standard"},
                s3={"addressing_style": config.addressing_style},
            ),
        )

    def key(self, rel: str) -> str:
        return self.prefix + rel.lstrip("/")

    def put(self, rel: str, path: Path, media_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(rel)
        try:
            with open(path, "rb") as body:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=media_type)
        except (BotoCoreError, ClientError, OSError) as e:
            raise StorageError(
                f"Could not write {key} to the output store s3://{self.bucket} ({_reason(e)}); "
                f"the file is kept in the data dir at {rel}"
            ) from None

    def url(self, rel: str, ttl: float) -> str | None:
        return self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key(rel)},
            ExpiresIn=max(1, min(int(ttl), MAX_TTL)),
        )

    def close(self) -> None:
        self._client.close()


def _reason(e: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip().rstrip(":")
    return str(e) or type(e).__name__
