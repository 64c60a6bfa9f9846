"""Helpers shared by the bench scripts: memory probes, subprocess workers, table printing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent


def proc_status_kb(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS = now, VmHWM = peak resident set)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mb() -> float:
    return proc_status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    return proc_status_kb("VmHWM") / 1024


def run_worker(script: Path, args: list[str], threads: int, timeout: float = 1800) -> dict[str, Any]:
    """Run `script --worker ...` in a fresh interpreter (so peak RSS is its own); parse its last JSON line."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: Iterable[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain-text table; `columns` = [(key, header)]; floats get 3 significant decimals."""
    rows = list(rows)

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "PASS" if v else "FAIL"
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return "-" if v is None else str(v)

    cells = [[header for _, header in columns]] + [[fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(name: str, payload: dict[str, Any], human: str) -> None:
    """One JSON line (machine-readable, first) then the human table."""
    print(json.dumps({"bench": name, **payload}, sort_keys=True))
    print()
    print(human)


def shipped_checkpoint(space, data: str) -> Path:
    """The shipped hypernet for `space`, found the way studies find it (`hypernet.pretrained_path`)."""
    from hypernet.checkpoint import pretrained_path

    path = pretrained_path(space.signature())
    if path is None:
        raise SystemExit(f"no shipped checkpoint for {space.signature()['space']} x {data} in hypernet/pretrained/")
    return path


def describe_arch(config) -> str:
    """A short name of an architecture for tables: L<depth> d<width> h<heads> ..."""
    if config.space == "vit":
        return f"L{config.depth} d{config.width} h{config.heads} p{config.patch_size} m{config.mlp_ratio:g}"
    return f"L{config.depth} d{config.width} h{config.heads} m{config.mlp_ratio:g} tied={int(config.tied_embeddings)}"
