"""Shared helpers of the dashboard tests (a plain module: `conftest` names clash across test folders)."""
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAIN = str(ROOT / "app" / "main.py")


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
