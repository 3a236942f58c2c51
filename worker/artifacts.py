"""Artifact stores: S3-compatible storage (boto3) or a local folder, behind one interface.

Objects are streamed in 8 MiB chunks whatever their size; sha256 and size are computed on
the way, so memory stays flat for a 200 MB file. Keys are made by cairn (:func:`object_key`),
never taken raw from callers. The backend is chosen by settings with no silent fallback
from S3 to the local folder, and workers never create buckets: ``cairn artifacts init``
does, through :meth:`S3Store.ensure_bucket`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from worker.errors import (
    ArtifactIntegrityError,
    ArtifactMissing,
    ArtifactStoreUnavailable,
    CairnError,
    ConfigurationError,
    InvalidArtifactName,
)
from worker.serialization import sha256_hex
from worker.settings import Settings

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 8 * 1024 * 1024  # the read unit and the multipart part size (S3's minimum is 5 MiB)
MAX_PARTS = 10_000  # S3's limit: one object holds at most MAX_PARTS x CHUNK = 80 GiB
MAX_NAME = 255
MAX_KEY_BYTES = 1024  # S3's limit on a key
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4's limit on a presigned URL
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BUCKET = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TMP_PREFIX, _TMP_SUFFIX = ".cairn-", ".partial"
_DENIED = frozenset({"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})
_NOT_FOUND = frozenset({"404", "NotFound", "NoSuchKey"})
_ERRORS = (BotoCoreError, ClientError)


class Readable(Protocol):
    """A binary file object, as ``put`` reads it."""

    def read(self, size: int = -1, /) -> bytes | None:
        """Up to ``size`` bytes; b'' at the end."""


#: What ``put`` accepts: bytes, a file path, or a binary file object.
Source = bytes | str | Path | Readable


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a put wrote: the key, its size and sha256, and the content type it was given."""

    key: str
    size: int
    sha256: str
    content_type: str | None = None


def _path_problem(text: str) -> str | None:  # noqa: PLR0911 (one return per rule reads best)
    """Why ``text`` is not a safe relative ``a/b/c`` path, or None."""
    if not text:
        return "is empty"
    if text.startswith("/"):
        return "starts with '/' (it must be relative)"
    if "\\" in text:
        return "has a backslash (use '/' between folders)"
    if found := _CONTROL.search(text):
        return f"has the control character U+{ord(found.group()):04X}"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "is not valid Unicode (it has a lone surrogate)"
    for segment in text.split("/"):
        if segment in ("", ".", ".."):
            return f"has a {segment!r} path segment" if segment else "has an empty path segment"
        if len(segment.encode()) > 255:
            return "has a path segment over 255 bytes (a file system limit)"
    return None


def _refuse(what: str, text: str, problem: str | None) -> str:
    """Return ``text``, or raise :class:`InvalidArtifactName` quoting it (escaped, cut)."""
    if problem:
        shown = repr(text[:80]) + ("..." if len(text) > 80 else "")
        raise InvalidArtifactName(f"{what} {shown} {problem}")
    return text


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe artifact name; else :class:`InvalidArtifactName`."""
    too_long = f"is {len(name)} characters long, over the limit of {MAX_NAME}"
    return _refuse(
        "artifact name", name, _path_problem(name) or (too_long if len(name) > MAX_NAME else None)
    )


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object key: the rules of names, up to 1024 bytes."""
    too_long = f"is over the limit of {MAX_KEY_BYTES} bytes"
    problem = _path_problem(key)
    return _refuse(
        "object key", key, problem or (too_long if len(key.encode()) > MAX_KEY_BYTES else None)
    )


def object_key(tenant_id: object, run_id: object, step_key: str, attempt: int, name: str) -> str:
    """The object key of an artifact: ``tenant/run/step_key/attempt/name``."""
    validate_name(name)
    for what, part in (("tenant id", tenant_id), ("run id", run_id), ("step key", step_key)):
        text = str(part)
        _refuse(what, text, "has a '/'" if "/" in text else _path_problem(text))
    if isinstance(attempt, bool) or attempt < 1:
        raise InvalidArtifactName(f"attempt {attempt!r} must be a positive number")
    return validate_key(f"{tenant_id}/{run_id}/{step_key}/{attempt}/{name}")


def _read_full(stream: Readable, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end: pipes and raw streams read short."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        data: object = stream.read(size - got)
        if not isinstance(data, bytes):
            raise TypeError("an artifact source must be a blocking file object in binary mode")
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _chunks(source: Source) -> Iterator[bytes]:
    """``source`` in chunks of CHUNK bytes; the last may be shorter, an empty source is b''."""
    if isinstance(source, bytes):
        for start in range(0, max(len(source), 1), CHUNK):
            yield source[start : start + CHUNK]
    elif isinstance(source, str | Path):
        with open(source, "rb") as stream:
            yield from _chunks(stream)
    else:
        chunk = _read_full(source, CHUNK)
        yield chunk
        while len(chunk) == CHUNK and (chunk := _read_full(source, CHUNK)):
            yield chunk


class _Tally:
    """sha256 and size of the bytes that went through :meth:`feed`."""

    def __init__(self) -> None:
        self.digest, self.size = hashlib.sha256(), 0

    def feed(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Pass ``chunks`` on, counting them."""
        for chunk in chunks:
            self.digest.update(chunk)
            self.size += len(chunk)
            yield chunk

    def stored(self, key: str, content_type: str | None) -> StoredObject:
        """What the put wrote."""
        return StoredObject(key, self.size, self.digest.hexdigest(), content_type)


class ArtifactStore(ABC):
    """Where artifacts and large values live."""

    @abstractmethod
    def put(self, key: str, source: Source, content_type: str | None = None) -> StoredObject:
        """Stream ``source`` to ``key`` (replacing it); return its size and sha256."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streaming reader of the object; :class:`ArtifactMissing` if there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object (no error if it is gone)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True if the object exists."""

    @abstractmethod
    def list_objects(self, prefix: str = "") -> list[tuple[str, datetime]]:
        """Keys under ``prefix`` with their last-modified times (for orphan cleanup), sorted."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`ArtifactStoreUnavailable` unless the store can be used."""

    def list_keys(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted."""
        return [key for key, _ in self.list_objects(prefix)]

    def presigned_url(self, key: str, expires_s: int) -> str:
        """A time-limited GET URL of the object (S3 only)."""
        raise ConfigurationError(
            "presigned URLs need the s3 artifact backend (CAIRN_ARTIFACT_BACKEND=s3); "
            "the local folder has no server to hand out URLs"
        )

    def get_bytes(self, key: str, expected_sha256: str | None = None) -> bytes:
        """The whole object; with ``expected_sha256``, verified."""
        with self.open(key) as stream:
            data = stream.read()
        if expected_sha256 is not None and (actual := sha256_hex(data)) != expected_sha256:
            raise ArtifactIntegrityError(
                f"object {key} has sha256 {actual[:16]}... ({len(data)} bytes), expected "
                f"{expected_sha256[:16]}...: it was changed or truncated after it was stored"
            )
        return data


class LocalStore(ArtifactStore):
    """A folder on disk (the embedded default); a key is a file path under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*validate_key(key).split("/"))
        # Plain segments keep the path inside root; resolving also catches a symlink in it.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidArtifactName(f"object key {key!r} leads out of {self.root}")
        return path

    @contextlib.contextmanager
    def _disk(self, doing: str) -> Iterator[None]:
        """Turn a file system error into :class:`ArtifactStoreUnavailable`."""
        try:
            yield
        except OSError as exc:
            raise ArtifactStoreUnavailable(
                f"cannot {doing} in the artifacts folder {self.root}: {exc.strerror or exc}; "
                "check CAIRN_ARTIFACTS_DIR, its permissions and the free space"
            ) from None

    def put(self, key: str, source: Source, content_type: str | None = None) -> StoredObject:
        path, tally, doing = self._path(key), _Tally(), f"write {key}"
        with self._disk(doing):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(_TMP_SUFFIX, _TMP_PREFIX, path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in tally.feed(_chunks(source)):  # source errors pass through as-is
                    with self._disk(doing):
                        out.write(chunk)
                with self._disk(doing):
                    out.flush()
                    os.fsync(out.fileno())  # the row that points here is committed next
            with self._disk(doing):
                os.replace(tmp, path)  # atomic: readers never see half an object
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return tally.stored(key, content_type)

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        with self._disk(f"read {key}"):
            try:
                return path.open("rb")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise ArtifactMissing(f"object {key} is not in the folder {self.root}") from None

    def delete(self, key: str) -> None:
        with self._disk(f"delete {key}"):
            self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_objects(self, prefix: str = "") -> list[tuple[str, datetime]]:
        base = prefix.rpartition("/")[0]  # walk only the deepest folder the prefix names
        found = []
        for folder, _, files in os.walk(self._path(base) if base else self.root):
            for name in files:
                path = Path(folder, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix) and not (
                    name.startswith(_TMP_PREFIX) and name.endswith(_TMP_SUFFIX)
                ):
                    with contextlib.suppress(FileNotFoundError):  # deleted while we listed
                        found.append((key, datetime.fromtimestamp(path.stat().st_mtime, UTC)))
        return sorted(found)

    def check(self) -> None:
        with self._disk("create the folder"):
            self.root.mkdir(parents=True, exist_ok=True)


def _code(exc: Exception) -> str:
    """The S3 error code of a botocore error, or its class name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "?"))
    return type(exc).__name__


class S3Store(ArtifactStore):
    """An S3-compatible bucket (AWS, MinIO, SeaweedFS) through boto3."""

    def __init__(self, settings: Settings) -> None:
        self.bucket, self.region = settings.s3_bucket, settings.s3_region
        url = settings.s3_endpoint_url or None  # none (or empty) means AWS S3
        # Endpoints are named in errors: mask a user:password@ part, should one be there.
        self.endpoint = re.sub(r"//[^/@]*@", "//***@", url) if url else f"AWS S3 ({self.region})"
        config = Config(
            s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            signature_version="s3v4",
        )
        key, secret = settings.s3_access_key, settings.s3_secret_key
        # use_ssl only matters without an endpoint URL: botocore follows the URL's scheme.
        # A session of our own: boto3's default session is shared and not thread-safe.
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=url,
            region_name=self.region,
            aws_access_key_id=key.get_secret_value() if key else None,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            use_ssl=settings.s3_use_ssl,
            config=config,
        )

    def _unavailable(self, exc: Exception, doing: str) -> ArtifactStoreUnavailable:
        """Our error for a botocore one: where, what failed, and what to check."""
        code = _code(exc)
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            hint = "is the S3 server running and reachable? check CAIRN_S3_ENDPOINT_URL"
        elif isinstance(exc, NoCredentialsError) or code in _DENIED:
            hint = "access refused: check CAIRN_S3_ACCESS_KEY, CAIRN_S3_SECRET_KEY and policies"
        elif code == "NoSuchBucket" or (doing == "reach the bucket" and code in _NOT_FOUND):
            hint = "no such bucket: run `cairn artifacts init` (or fix CAIRN_S3_BUCKET)"
        else:
            hint = "is the server running? does the bucket exist (`cairn artifacts init`)?"
        return ArtifactStoreUnavailable(
            f"artifact store at {self.endpoint}, bucket {self.bucket!r}: cannot {doing} "
            f"({code}); {hint}"
        )

    def _call(
        self, doing: str, operation: str, absent: frozenset[str] = frozenset(), **params: Any
    ) -> Any:
        """One S3 operation on the bucket: its answer, or None when its error code is in
        ``absent``; any other botocore error becomes :class:`ArtifactStoreUnavailable`."""
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except _ERRORS as exc:
            if _code(exc) in absent:
                return None
            raise self._unavailable(exc, doing) from None

    def put(self, key: str, source: Source, content_type: str | None = None) -> StoredObject:
        extra: dict[str, Any] = {"Key": validate_key(key)}
        if content_type:
            extra["ContentType"] = content_type
        tally = _Tally()
        chunks = tally.feed(_chunks(source))
        head = list(islice(chunks, 2))
        if len(head) == 1:  # fits in one chunk: one PUT, one round trip
            self._call(f"upload {key}", "put_object", Body=head[0], **extra)
        else:
            self._multipart(key, chain(_drain(head), chunks), extra)
        return tally.stored(key, content_type)

    def _multipart(self, key: str, chunks: Iterator[bytes], extra: dict[str, Any]) -> None:
        """Upload ``chunks`` as the parts of one object; abort on any failure."""
        doing = f"upload {key}"
        upload = self._call(doing, "create_multipart_upload", **extra)["UploadId"]
        try:
            parts = []
            for number, chunk in enumerate(chunks, start=1):
                if number > MAX_PARTS:
                    raise CairnError(f"object {key} is over the {MAX_PARTS} x 8 MiB S3 allows")
                params = {"Key": key, "UploadId": upload, "PartNumber": number, "Body": chunk}
                etag = self._call(doing, "upload_part", **params)["ETag"]
                parts.append({"ETag": etag, "PartNumber": number})
            done = {"Key": key, "UploadId": upload, "MultipartUpload": {"Parts": parts}}
            self._call(doing, "complete_multipart_upload", **done)
        except BaseException:
            # An unfinished upload keeps its parts (and their cost) until it is aborted.
            with contextlib.suppress(*_ERRORS):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            raise

    def open(self, key: str) -> BinaryIO:
        got = self._call(f"read {key}", "get_object", frozenset({"NoSuchKey"}), Key=key)
        if got is None:
            raise ArtifactMissing(
                f"object {key} is not in bucket {self.bucket!r} at {self.endpoint}"
            )
        raw = _BodyReader(got["Body"], lambda exc: self._unavailable(exc, f"read {key}"))
        return io.BufferedReader(raw, buffer_size=CHUNK)

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", "delete_object", Key=key)

    def exists(self, key: str) -> bool:
        if self._call(f"look up {key}", "head_object", _NOT_FOUND, Key=key) is not None:
            return True
        self.check()  # HEAD answers a bare 404 for a missing bucket too
        return False

    def list_objects(self, prefix: str = "") -> list[tuple[str, datetime]]:
        found: list[tuple[str, datetime]] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                found += [(item["Key"], item["LastModified"]) for item in page.get("Contents", [])]
        except _ERRORS as exc:
            raise self._unavailable(exc, f"list objects under {prefix!r}") from None
        return sorted(found)

    def check(self) -> None:
        self._call("reach the bucket", "head_bucket")

    def ensure_bucket(self) -> bool:
        """Create the bucket when missing (``cairn artifacts init``); True if created."""
        if self._call("reach the bucket", "head_bucket", _NOT_FOUND) is not None:
            return False
        # AWS wants the region spelled out, except for us-east-1; other servers ignore it.
        where = {"LocationConstraint": self.region} if self.region != "us-east-1" else None
        config = {"CreateBucketConfiguration": where} if where else {}
        won = frozenset({"BucketAlreadyOwnedByYou"})  # another init got there first: fine
        return self._call("create the bucket", "create_bucket", won, **config) is not None

    def presigned_url(self, key: str, expires_s: int) -> str:
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise CairnError(
                f"a presigned URL lasts 1 to {MAX_PRESIGN_S} s (7 days), not {expires_s}"
            )
        params = {"Bucket": self.bucket, "Key": validate_key(key)}
        try:  # signed locally: no request is made
            return str(
                self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
            )
        except _ERRORS as exc:
            raise self._unavailable(exc, f"sign a URL for {key}") from None


def _drain(items: list[bytes]) -> Iterator[bytes]:
    """Yield and forget each item, so an uploaded part is not kept alive by the list."""
    while items:
        yield items.pop(0)


class _BodyReader(io.RawIOBase):
    """A raw reader over a botocore StreamingBody; read errors become cairn errors."""

    def __init__(self, body: Any, failed: Callable[[Exception], CairnError]) -> None:
        self._body, self._failed = body, failed

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except BotoCoreError as exc:  # the connection broke in the middle of the object
            raise self._failed(exc) from None
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def make_store(settings: Settings) -> ArtifactStore:
    """The store the settings name: the local folder or S3, never one instead of the other."""
    if settings.artifact_backend == "local":
        return LocalStore(settings.artifacts_dir)
    # Refuse here what could only fail later; values are not echoed (they may be secrets).
    if not _BUCKET.match(settings.s3_bucket):
        raise ConfigurationError(
            "CAIRN_S3_BUCKET must name a bucket: 3 to 63 lowercase letters, digits, '.' or '-'"
        )
    if (settings.s3_access_key is None) != (settings.s3_secret_key is None):
        raise ConfigurationError(
            "set both CAIRN_S3_ACCESS_KEY and CAIRN_S3_SECRET_KEY, or neither (AWS's own chain)"
        )
    url = settings.s3_endpoint_url
    if url and not re.match(r"^https?://[^/\s]+", url):
        raise ConfigurationError("CAIRN_S3_ENDPOINT_URL must be an http(s):// URL (unset for AWS)")
    return S3Store(settings)
