"""Minimal W3C WebDriver client (stdlib only) for headless chromium + chromedriver.

Enough to load a Streamlit page, wait until its script run finished, run a bit of JavaScript
and take a PNG screenshot. Used by the browser test and by `shoot.py` for README screenshots.
"""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

# Streamlit is done when the app exists, no script run is in progress (status widget gone), at
# least one element was rendered and no lazily loaded widget still shows its skeleton.
_READY_JS = """
const app = document.querySelector('[data-testid="stApp"]');
const running = document.querySelector('[data-testid="stStatusWidget"]');
const loading = document.querySelector('[data-testid="stSkeleton"]');
const want = arguments[0];
return !!app && !running && !loading && (!want || !!document.querySelector(want))
    && document.querySelectorAll('[data-testid="stElementContainer"]').length > 0;
"""


def chromium_binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless chromium session; use as a context manager."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        found = chromium_binaries()
        if found is None:
            raise RuntimeError("chromium and chromedriver must be on PATH")
        self._browser, driver = found
        port = free_port()
        self._driver = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self._base = f"http://127.0.0.1:{port}"
        self._profile = tempfile.TemporaryDirectory(prefix="logah-chromium-")
        self._size = (width, height)
        self._session: str | None = None

    def __enter__(self) -> Browser:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(self._base + "/status", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("chromedriver did not start") from None
                time.sleep(0.1)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", f"--user-data-dir={self._profile.name}",
                f"--window-size={self._size[0]},{self._size[1]}"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": self._browser, "args": args}}}}
        self._session = self._call("POST", "/session", caps)["sessionId"]
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            try:
                self._call("DELETE", f"/session/{self._session}")
            except OSError:
                pass
            self._session = None
        self._driver.terminate()
        try:
            self._driver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._driver.kill()
        self._profile.cleanup()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(self._base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())["value"]

    def get(self, url: str) -> None:
        self._call("POST", f"/session/{self._session}/url", {"url": url})

    def js(self, script: str, *args: Any) -> Any:
        return self._call("POST", f"/session/{self._session}/execute/sync", {"script": script, "args": list(args)})

    def wait_streamlit(self, css: str | None = None, timeout: float = 60.0, settle: float = 1.0) -> bool:
        """Wait until the script run finished (and `css` matches, if given); then let charts draw."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.js(_READY_JS, css):
                time.sleep(settle)
                if self.js(_READY_JS, css):  # a rerun may start right after the first one
                    return True
            time.sleep(0.25)
        return False

    def set_height(self, height: int) -> None:
        self._call("POST", f"/session/{self._session}/window/rect", {"width": self._size[0], "height": height})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", f"/session/{self._session}/screenshot"))
