"""Every Parquet file fex writes (ingest records and rejects parts, manifests, edit tables) and reads back.

`write_table` writes atomically (fexdata.paths), with a CRC32 checksum on every page and the SHA-256 of
the whole file in the footer's key-value metadata (`fex-file-sha256`). Page checksums alone miss damage
to the footer, which holds the schema, the metadata and where each column lies: flipped footer bytes
were read back silently as other metadata or other values (docs/manifest.md, "Integrity"). The SHA-256
is computed with 64 '0's in place of itself and then written over them, so it covers every byte of the
file but its own, and the same table still gives the same bytes.

`read_table` and `read_schema` read the whole file, check the SHA-256 and the page checksums, and turn
any damage into the caller's FexError subclass naming the file and how to rebuild it. Other readers
(`pandas.read_parquet`) see ordinary Parquet with one more metadata key.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from fexdata.errors import FexError, ManifestError
from fexdata.paths import atomic_write_bytes

# Outside the `fex.` namespace on purpose: it says nothing about the content (read_meta, and the
# content digests of tests/test_output_digests.py, cover `fex.*` keys only).
DIGEST_KEY = b"fex-file-sha256"
_PLACEHOLDER = b"0" * 64
_HEX64 = re.compile(rb"[0-9a-f]{64}")
_MAGIC = b"PAR1"


class Damaged(Exception):
    """Why a file cannot be trusted (internal: the readers raise the caller's FexError)."""


def write_table(table: pa.Table, path: str | os.PathLike, **options) -> None:
    """Write `table` to `path` atomically, with page checksums and the file's SHA-256 (zstd unless told).

    `options` go to `pyarrow.parquet.write_table` (row_group_size, write_statistics, ...).
    """
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != DIGEST_KEY}
    meta[DIGEST_KEY] = _PLACEHOLDER
    options.setdefault("compression", "zstd")
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink, write_page_checksum=True, **options)
    data = bytearray(sink.getvalue())
    at = _digest_offset(data)
    if at is None or data[at:at + 64] != _PLACEHOLDER:  # pyarrow laid the footer out unlike we assume
        raise RuntimeError(f"could not place the checksum in the footer of {path}")
    data[at:at + 64] = hashlib.sha256(data).hexdigest().encode()
    atomic_write_bytes(path, data)


def _digest_offset(data: bytes | bytearray) -> int | None:
    """Offset of the 64 hex digits stored under DIGEST_KEY in the footer, None when there are none."""
    if len(data) < 12 or data[:4] != _MAGIC or data[-4:] != _MAGIC:
        raise Damaged("not a whole Parquet file (its first or last 4 bytes are not PAR1)")
    start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    if start < 4:
        raise Damaged("not a whole Parquet file (its footer length is wrong)")
    key = data.rfind(DIGEST_KEY, start, len(data) - 8)
    if key < 0:
        return None
    # The value follows its key after a field header and a length (2 bytes of Thrift), within a few bytes.
    end = key + len(DIGEST_KEY)
    found = _HEX64.search(bytes(data[end:end + 8 + 64]))
    return end + found.start() if found else None


def _verified(path: Path, require_digest: bool) -> pa.Buffer:
    """The file's bytes once its SHA-256 matches (or, without one, when `require_digest` is False)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Damaged(f"cannot be read ({exc.strerror or exc})") from None
    at = _digest_offset(data)
    if at is None:
        if require_digest:
            raise Damaged("has no fex checksum: written by an older fex or another program, or damaged")
        return pa.py_buffer(data)
    h = hashlib.sha256()
    view = memoryview(data)
    h.update(view[:at])
    h.update(_PLACEHOLDER)
    h.update(view[at + 64:])
    if h.hexdigest().encode() != data[at:at + 64]:
        raise Damaged("is damaged: its bytes no longer match the checksum fex wrote into it")
    return pa.py_buffer(data)


def _open(path: Path, require_digest: bool) -> pq.ParquetFile:
    buf = _verified(path, require_digest)
    try:
        return pq.ParquetFile(pa.BufferReader(buf), page_checksum_verification=True)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise Damaged(f"is not readable Parquet ({exc})") from None


def _fail(path: Path, why: str, error: type[FexError], hint: str) -> FexError:
    return error(f"{path}: {why}", hint=hint)


def problem(path: str | os.PathLike, require_digest: bool = True) -> str | None:
    """Why the file at `path` cannot be trusted, or None when it is whole (reads and hashes it)."""
    try:
        _open(Path(path), require_digest)
    except Damaged as exc:
        return str(exc)
    return None


def open_file(path: str | os.PathLike, *, error: type[FexError] = ManifestError, hint: str = "",
              require_digest: bool = True) -> pq.ParquetFile:
    """A verified file, held in memory, for a caller that looks at its schema before reading columns."""
    path = Path(path)
    try:
        return _open(path, require_digest)
    except Damaged as exc:
        raise _fail(path, str(exc), error, hint) from None


def read_schema(path: str | os.PathLike, *, error: type[FexError] = ManifestError, hint: str = "",
                require_digest: bool = True) -> pa.Schema:
    """The Arrow schema (with its key-value metadata) of a verified file."""
    return _without_digest(open_file(path, error=error, hint=hint, require_digest=require_digest).schema_arrow)


def read_table(path: str | os.PathLike, columns: Iterable[str] | None = None, *,
               error: type[FexError] = ManifestError, hint: str = "", require_digest: bool = True) -> pa.Table:
    """A verified file as a table, or every `*.parquet` part of a folder (sorted by name, temp files left
    out) as one; raises `error` naming the damaged file and with `hint`, never returns altered data."""
    path = Path(path)
    cols = list(columns) if columns is not None else None
    if path.is_dir():
        parts = sorted(p for p in path.glob("*.parquet") if not p.name.startswith((".", "_")))
        tables = [read_table(p, cols, error=error, hint=hint, require_digest=require_digest) for p in parts]
        return pa.concat_tables(tables) if tables else pa.table({})
    parquet_file = open_file(path, error=error, hint=hint, require_digest=require_digest)
    try:
        table = parquet_file.read(columns=cols)
    except (OSError, pa.ArrowException, ValueError) as exc:  # whole by its checksum, yet pyarrow refuses it
        raise _fail(path, f"is not readable Parquet ({exc})", error, hint) from None
    return table.replace_schema_metadata(_without_digest(table.schema).metadata)


def _without_digest(schema: pa.Schema) -> pa.Schema:
    meta = schema.metadata
    if meta is None or DIGEST_KEY not in meta:
        return schema
    return schema.with_metadata({k: v for k, v in meta.items() if k != DIGEST_KEY})
