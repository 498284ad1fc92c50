"""Reading benchmark files as VNN-COMP publishes them: plain or gzipped, named with or without ``.gz``.

VNN-COMP's ``instances.csv`` names ``onnx/net.onnx`` while the repository ships ``onnx/net.onnx.gz``;
:func:`resolve` finds whichever exists and :func:`read_bytes` decompresses gzip transparently.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from actbench.errors import InvalidFile

_GZIP_MAGIC = b"\x1f\x8b"


def resolve(path: str | Path, what: str = "file") -> Path:
    """``path`` itself, else ``path.gz``; :class:`InvalidFile` when neither exists."""
    path = Path(path)
    if path.is_file():
        return path
    gz = path.with_name(path.name + ".gz")
    if gz.is_file():
        return gz
    raise InvalidFile(f"no {what} at {path}" + ("" if path.suffix == ".gz" else f" (nor {gz.name})"))


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    """The (decompressed) content of ``path`` or ``path.gz``."""
    real = resolve(path, what)
    try:
        data = real.read_bytes()
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InvalidFile(f"{real}: cannot read the {what} ({type(exc).__name__}: {exc})") from exc
    return data


def read_text(path: str | Path, what: str = "file") -> str:
    """``read_bytes`` decoded as UTF-8."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidFile(f"{path}: the {what} is not UTF-8 text") from exc


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file as stored (not decompressed): identifies a submitted file exactly."""
    digest = hashlib.sha256()
    with open(resolve(path), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
