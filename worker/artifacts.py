"""Artifact stores: S3-compatible storage (boto3) or a local folder, behind one interface.

Objects are streamed in bounded chunks whatever their size; sha256 and size are computed
on the way. Keys are made by cairn (tenant/run/step/attempt/name), never by callers. The
backend is chosen by settings; there is no silent fallback from S3 to the local folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from worker.errors import CairnError, ConfigurationError
from worker.settings import Settings

CHUNK = 8 * 1024 * 1024  # also the multipart part size (S3's minimum is 5 MiB)
MAX_NAME = 255
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f\\]")

Source = bytes | str | Path | IO[bytes]


class ArtifactStoreUnavailable(CairnError):
    """The artifact store cannot be reached; check its endpoint, bucket and credentials."""


class ArtifactIntegrityError(CairnError):
    """A stored object does not match the sha256 recorded for it."""


class InvalidArtifactName(CairnError):
    """An artifact name is not a plain relative name."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a put wrote: the key, its size and sha256."""

    key: str
    size: int
    sha256: str
    content_type: str | None = None


def validate_name(name: str) -> str:
    """Refuse names that could escape their folder or confuse tools; return ``name``."""
    if not name:
        raise InvalidArtifactName("artifact name is empty")
    if len(name) > MAX_NAME:
        raise InvalidArtifactName(f"artifact name is over {MAX_NAME} characters")
    if name.startswith("/"):
        raise InvalidArtifactName(f"artifact name {name!r} starts with '/'")
    if _BAD_NAME.search(name):
        raise InvalidArtifactName("artifact name has a control character or a backslash")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise InvalidArtifactName(f"artifact name {name!r} has an empty, '.' or '..' segment")
    return name


def object_key(tenant_id: object, run_id: object, step_key: str, attempt: int, name: str) -> str:
    """The object key of an artifact: tenant/run/step/attempt/name."""
    return f"{tenant_id}/{run_id}/{step_key}/{attempt}/{validate_name(name)}"


def _chunks(source: Source) -> Iterator[bytes]:
    """Read any source in bounded chunks."""
    if isinstance(source, bytes):
        for start in range(0, len(source), CHUNK):
            yield source[start : start + CHUNK]
        if not source:
            yield b""
        return
    if isinstance(source, str | Path):
        with open(source, "rb") as f:
            yield from _chunks(f)
        return
    while chunk := source.read(CHUNK):
        yield chunk


class ArtifactStore(ABC):
    """Where artifacts and large values live."""

    @abstractmethod
    def put(self, key: str, source: Source, content_type: str | None = None) -> StoredObject:
        """Stream ``source`` to ``key``; return its size and sha256."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streaming reader of the object."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object (no error if it is gone)."""

    @abstractmethod
    def list_objects(self, prefix: str = "") -> list[tuple[str, datetime]]:
        """Keys under ``prefix`` with their last-modified times."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`ArtifactStoreUnavailable` unless the store can be used."""

    def presigned_url(self, key: str, expires_s: int) -> str:
        """A time-limited GET URL (S3 only)."""
        raise ConfigurationError("presigned URLs need the s3 artifact backend")

    def exists(self, key: str) -> bool:
        """True if the object exists."""
        return any(k == key for k, _ in self.list_objects(key))

    def get_bytes(self, key: str, expected_sha256: str | None = None) -> bytes:
        """The whole object; with ``expected_sha256``, verified."""
        with self.open(key) as stream:
            data = stream.read()
        if expected_sha256 is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected_sha256:
                raise ArtifactIntegrityError(
                    f"object {key} has sha256 {actual[:12]}..., expected "
                    f"{expected_sha256[:12]}...: it was changed or truncated"
                )
        return data


class LocalStore(ArtifactStore):
    """A folder on disk (the embedded default)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidArtifactName(f"key {key!r} escapes the artifacts folder")
        return path

    def put(self, key: str, source: Source, content_type: str | None = None) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(source):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            os.replace(tmp, path)  # atomic: readers never see half an object
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredObject(key, size, digest.hexdigest(), content_type)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ArtifactStoreUnavailable(f"object {key} is missing from {self.root}") from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list_objects(self, prefix: str = "") -> list[tuple[str, datetime]]:
        if not self.root.exists():
            return []
        found = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith(".upload-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append((key, datetime.fromtimestamp(path.stat().st_mtime, UTC)))
        return sorted(found)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactStoreUnavailable(
                f"artifacts folder {self.root} cannot be created: {exc.strerror} "
                "(check CAIRN_ARTIFACTS_DIR)"
            ) from None


class S3Store(ArtifactStore):
    """An S3-compatible bucket (AWS, MinIO, SeaweedFS) through boto3."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.endpoint = settings.s3_endpoint_url or "AWS S3"
        config = Config(
            s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            signature_version="s3v4",
        )
        key, secret = settings.s3_access_key, settings.s3_secret_key
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=key.get_secret_value() if key else None,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            use_ssl=settings.s3_use_ssl,
            config=config,
        )

    def _unavailable(self, exc: Exception, doing: str) -> ArtifactStoreUnavailable:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        return ArtifactStoreUnavailable(
            f"cannot {doing} (bucket {self.bucket!r} at {self.endpoint}): {code}. Check that "
            "the server runs, the bucket exists (cairn artifacts init) and the credentials "
            "(CAIRN_S3_ACCESS_KEY / CAIRN_S3_SECRET_KEY) are right"
        )

    def put(self, key: str, source: Source, content_type: str | None = None) -> StoredObject:
        extra = {"ContentType": content_type} if content_type else {}
        digest, size, upload_id = hashlib.sha256(), 0, None
        chunks = _chunks(source)
        try:
            first = next(chunks, b"")
            second = next(chunks, None)
            if second is None:  # one chunk: a single PUT
                digest.update(first)
                self.client.put_object(Bucket=self.bucket, Key=key, Body=first, **extra)
                return StoredObject(key, len(first), digest.hexdigest(), content_type)
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)[
                "UploadId"
            ]
            parts = []
            for number, chunk in enumerate(_prepend(first, second, chunks), start=1):
                digest.update(chunk)
                size += len(chunk)
                etag = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                )["ETag"]
                parts.append({"ETag": etag, "PartNumber": number})
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return StoredObject(key, size, digest.hexdigest(), content_type)
        except (BotoCoreError, ClientError) as exc:
            if upload_id is not None:
                with contextlib.suppress(BotoCoreError, ClientError):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
            raise self._unavailable(exc, f"upload {key}") from None

    def open(self, key: str) -> BinaryIO:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc, f"read {key}") from None
        return io.BufferedReader(_StreamingReader(body), buffer_size=CHUNK)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc, f"delete {key}") from None

    def list_objects(self, prefix: str = "") -> list[tuple[str, datetime]]:
        found: list[tuple[str, datetime]] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                found += [(o["Key"], o["LastModified"]) for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc, "list objects") from None
        return found

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise self._unavailable(exc, f"look up {key}") from None
        except BotoCoreError as exc:
            raise self._unavailable(exc, f"look up {key}") from None
        return True

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc, "reach the bucket") from None

    def ensure_bucket(self) -> bool:
        """Create the bucket when missing (``cairn artifacts init``); True if created."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return False
        except ClientError:
            pass
        except BotoCoreError as exc:
            raise self._unavailable(exc, "reach the bucket") from None
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc, "create the bucket") from None
        return True

    def presigned_url(self, key: str, expires_s: int) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
            )
        )


def _prepend(first: bytes, second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield second
    yield from rest


class _StreamingReader(io.RawIOBase):
    """A file-like reader over a botocore StreamingBody."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return bytes(self._body.read() if size is None or size < 0 else self._body.read(size))

    def close(self) -> None:
        self._body.close()
        super().close()


def make_store(settings: Settings) -> ArtifactStore:
    """The store the settings name."""
    if settings.artifact_backend == "s3":
        if not settings.s3_bucket:
            raise ConfigurationError("CAIRN_S3_BUCKET must name a bucket for the s3 backend")
        return S3Store(settings)
    return LocalStore(settings.artifacts_dir)
