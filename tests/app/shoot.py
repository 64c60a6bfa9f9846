"""Screenshots of the dashboard pages (for looking at the layout and for docs/dashboard.png).

    python tests/app/shoot.py OUT_DIR [--trials N] [--views warm ...] [--docs docs/dashboard.png]

Builds a synthetic study in OUT_DIR, starts the app with `nas.dashboard`, saves one PNG per view.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _studies  # noqa: E402
from _webdriver import Browser, free_port  # noqa: E402

from nas import dashboard  # noqa: E402

VIEWS = {
    "studies": "/",
    "study": "/study?study=vit-digits",
    "warm": "/study?study=vit-digits&tab=Warm+start+vs+random",
    "trials": "/study?study=vit-digits&tab=Trials",
    "versions": "/study?study=vit-digits&tab=Hypernet+versions",
    "export": "/study?study=vit-digits&tab=Best+model+%26+export",
    "legacy": "/study?study=legacy",
}


def _docs_image(png: bytes, out: Path, top: int = 70, bottom: int = 1290, limit: int = 300_000) -> None:
    """Crop to the charts and metrics, then shrink to a palette PNG if it is over `limit` bytes."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.crop((0, top, image.width, min(bottom, image.height)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    if buffer.tell() > limit:
        buffer = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buffer, "PNG", optimize=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buffer.getvalue())
    print(f"docs image: {out} ({len(buffer.getvalue())} bytes, {image.width}x{image.height})")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--trials", type=int, default=120)
    p.add_argument("--height", type=int, default=1000)
    p.add_argument("--views", nargs="*", default=list(VIEWS))
    p.add_argument("--docs", type=Path, help="also write the 'warm' view, cropped and compressed, here")
    p.add_argument("--storage", help="shoot this existing storage instead of a synthetic demo")
    p.add_argument("--artifacts", help="with --storage: its artifact folder")
    p.add_argument("--study", default="vit-digits")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.out = args.out.resolve()
    if args.storage:
        url, artifacts = args.storage, args.artifacts
    else:
        os.chdir(args.out)  # the app shows the storage URL: make it the default-looking relative one
        Path("logah_runs").mkdir(exist_ok=True)
        url, artifacts = _studies.demo_storage("logah_runs", n_trials=args.trials)
    port = free_port()
    server = dashboard.launch(url, port=port, artifacts=artifacts)
    try:
        if not dashboard.wait_ready(port, process=server):
            raise SystemExit("dashboard did not start")
        with Browser(height=args.height) as b:
            for view in args.views:
                b.get(f"http://127.0.0.1:{port}{VIEWS[view].replace('vit-digits', args.study)}")
                ok = b.wait_streamlit(".js-plotly-plot" if view in ("study", "warm", "versions") else None)
                png = b.screenshot()
                (args.out / f"{view}.png").write_bytes(png)
                print(f"{view}: {len(png)} bytes{'' if ok else ' (timed out waiting)'}")
                if view == "warm" and args.docs:
                    _docs_image(png, args.docs)
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
