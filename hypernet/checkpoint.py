"""Hypernet checkpoints: one `.safetensors` file, never pickled.

The header metadata (string -> string) holds JSON for the format name and version, the
`LoGAHConfig`, the search-space signature, the caller's `meta`, and the sha256 of the tensor
payload (the bytes after the header). The payload is hashed rather than the whole file
because the hash lives in the header; safetensors lays the payload out deterministically,
so it does not change when the header does.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import torch

from search_spaces.files import atomic_write_bytes

from .model import LoGAH, LoGAHConfig

FORMAT_NAME = "logah-nas-hypernet"
FORMAT_VERSION = 1
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
_MAX_HEADER = 100_000_000  # safetensors' own limit on the header size


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, of another format, or for another search space."""


def _split(blob: bytes, path: Path) -> tuple[dict[str, Any], bytes]:
    """safetensors bytes -> (header JSON, payload bytes), with clear errors for damaged files."""
    if len(blob) < 8:
        raise CheckpointError(f"{path}: file is truncated ({len(blob)} bytes), not a safetensors checkpoint")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > _MAX_HEADER or 8 + n > len(blob):
        raise CheckpointError(f"{path}: file is truncated or not safetensors (header length {n}, size {len(blob)})")
    try:
        header = json.loads(blob[8: 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    return header, blob[8 + n:]


def _metadata(header: dict[str, Any], path: Path) -> dict[str, Any]:
    raw = header.get("__metadata__") or {}
    if raw.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a logah-nas hypernet checkpoint (format={raw.get('format')!r}, "
                              f"expected {FORMAT_NAME!r})")
    try:
        version = int(raw.get("format_version", "-1"))
        meta = {k: json.loads(raw[k]) for k in ("config", "space_signature", "meta")}
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({e})") from None
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} is not supported "
                              f"(this code reads version {FORMAT_VERSION})")
    meta["sha256"] = raw.get("sha256")
    return meta


def _serialise(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save

    return save(tensors, metadata=metadata)


def save_checkpoint(hn: LoGAH, path: str | Path, meta: dict[str, Any] | None = None) -> str:
    """Write `hn` atomically to one .safetensors file; returns the payload's sha256.

    `meta` must be JSON-serialisable (e.g. version, trials used, val loss).
    """
    path = Path(path)
    tensors = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
               for k, v in hn.state_dict().items()}  # weights fp32; coverage buffers keep bool / int64
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(hn.config.to_dict(), sort_keys=True),
        "space_signature": json.dumps(hn.config.space_signature, sort_keys=True),
        "meta": json.dumps(meta or {}, sort_keys=True),
    }
    _, payload = _split(_serialise(tensors, metadata), path)
    digest = hashlib.sha256(payload).hexdigest()
    blob = _serialise(tensors, {**metadata, "sha256": digest})
    if _split(blob, path)[1] != payload:  # safetensors must not reorder the payload
        raise RuntimeError("safetensors payload changed with its header; cannot record a checksum")
    atomic_write_bytes(path, blob)
    return digest


def read_header(path: str | Path) -> dict[str, Any]:
    """The checkpoint's metadata without reading its tensors (config, space_signature, meta, sha256)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            blob = head + (f.read(n) if n <= _MAX_HEADER else b"")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    header, _ = _split(blob, path)
    return _metadata(header, path)


def _legacy_coverage(hn: LoGAH, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Coverage buffers for a checkpoint written before they existed: every shape row counts as
    trained and depth / basis reach as unrecorded, so it predicts exactly as it did."""
    legacy = {}
    for name, value in hn.state_dict().items():
        if name.endswith(("out_seen", "in_seen", "layers_seen", "width_seen", "rows_seen")) and name not in tensors:
            legacy[name] = torch.ones_like(value) if value.dtype == torch.bool else torch.zeros_like(value)
    return legacy


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    expected_signature: dict[str, Any] | None = None) -> tuple[LoGAH, dict[str, Any]]:
    """(hypernet, meta) from a file written by `save_checkpoint`; never unpickles.

    Raises `CheckpointError` if the file is missing, truncated or corrupt, of another format,
    fails its checksum, or (with `expected_signature`) belongs to another search space.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    header, payload = _split(blob, path)
    info = _metadata(header, path)
    if hashlib.sha256(payload).hexdigest() != info["sha256"]:
        raise CheckpointError(f"{path}: checksum mismatch, the tensor data is corrupt "
                              f"(expected sha256 {info['sha256']})")
    if expected_signature is not None and info["space_signature"] != expected_signature:
        raise CheckpointError(f"{path}: checkpoint is for search space {info['space_signature']}, "
                              f"not {expected_signature}")
    try:
        tensors = load(blob)
        hn = LoGAH(LoGAHConfig.from_dict(info["config"]))
        hn.load_state_dict({**_legacy_coverage(hn, tensors), **tensors}, strict=True)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot restore the hypernet ({e})") from None
    meta = dict(info["meta"])
    meta["sha256"] = info["sha256"]
    return hn.to(map_location), meta


def pretrained_paths(space_signature: dict[str, Any], directory: str | Path | None = None, *,
                     same_kind: bool = False) -> list[Path]:
    """The shipped checkpoints (in hypernet/pretrained/) trained for this search space (`same_kind`:
    for any space of its kind, e.g. every ViT one, what `hypernet.transfer` can move), by name.
    Which of them suits a study's data is the application's choice (their metadata says)."""
    directory = Path(directory) if directory is not None else PRETRAINED_DIR
    found = []
    for path in sorted(directory.glob("*.safetensors")):
        try:
            theirs = read_header(path)["space_signature"]
            if theirs == space_signature or (same_kind and theirs.get("space") == space_signature.get("space")):
                found.append(path)
        except CheckpointError:
            continue
    return found


def pretrained_path(space_signature: dict[str, Any], directory: str | Path | None = None) -> Path | None:
    """The first shipped checkpoint trained for this search space, if any."""
    paths = pretrained_paths(space_signature, directory)
    return paths[0] if paths else None
