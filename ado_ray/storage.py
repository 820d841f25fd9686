"""Study storage through pyarrow filesystems: local paths, NFS, ``file://``, ``s3://`` and ``gs://``.

Everything the platform persists (Parquet results, the study file as run, the Optuna journal)
goes through these helpers, so a study runs unchanged on a laptop or on a cluster whose
nodes share an object store.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss")


def scheme(uri: str) -> str:
    """The URI's scheme, '' for a plain local path."""
    parsed = urlparse(str(uri))
    # A Windows drive letter or a bare path has no real scheme.
    return parsed.scheme if len(parsed.scheme) > 1 else ""


def is_remote(uri: str) -> bool:
    """True for object stores that every node of a cluster reaches (s3://, gs://, ...)."""
    return scheme(uri) in REMOTE_SCHEMES


def normalize(uri: str) -> str:
    """Absolute form of a storage URI: local paths become absolute, URIs are kept as given."""
    uri = str(uri)
    if scheme(uri):
        return uri.rstrip("/")
    return os.path.abspath(os.path.expanduser(uri))


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a storage URI."""
    base = str(uri).rstrip("/")
    return "/".join([base, *[str(p).strip("/") for p in parts]])


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path inside it for ``uri``."""
    uri = normalize(uri)
    if not scheme(uri):
        return pafs.LocalFileSystem(), uri
    return pafs.FileSystem.from_uri(uri)


def makedirs(uri: str) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def listdir(uri: str) -> list[str]:
    """Base names of the files directly under ``uri`` (empty if it does not exist)."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return sorted(info.base_name for info in infos)


def delete(uri: str) -> None:
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` so that readers see the old file or the new one, never half.

    Local and NFS paths: write a temporary sibling, then rename (atomic on POSIX).
    Object stores: a single PUT is already atomic, so write in place.
    """
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.create_dir(parent, recursive=True)
    if is_remote(uri):
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with fs.open_output_stream(tmp) as out:
            out.write(data)
        fs.move(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk, say: leave no half-written sibling
            fs.delete_file(tmp)
        raise


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as src:
        return src.read()


def write_text_atomic(uri: str, text: str) -> None:
    write_bytes_atomic(uri, text.encode("utf-8"))


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_table_atomic(uri: str, table: pa.Table) -> None:
    """Write a Parquet file atomically (see :func:`write_bytes_atomic`)."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes_atomic(uri, buf.getvalue())


def read_table(uri: str) -> pa.Table:
    fs, path = resolve(uri)
    return pq.read_table(path, filesystem=fs)


def require_shared_storage(uri: str, num_nodes: int) -> None:
    """Refuse node-local storage for a study that spans several nodes.

    Each node would write its trials' checkpoints and results to its own disk, so a trial
    resumed on another node would not find them and the merged results would be partial.
    """
    if num_nodes <= 1 or is_remote(uri):
        return
    if scheme(uri) == "file" and os.environ.get("ADO_RAY_SHARED_FS") == "1":
        return  # the user vouches that this path is a mount every node shares
    raise ValueError(
        f"storage: {uri!r} is local to one node, but this Ray cluster has {num_nodes} nodes. "
        "A multi-node study needs storage that every node shares: an s3:// or gs:// URI. "
        "For an NFS mount present at the same path on every node, pass it as "
        "file:///mnt/path and set ADO_RAY_SHARED_FS=1."
    )
