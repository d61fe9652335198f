"""The portal served from a thread for tests, and headless Chromium driven by selenium."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack import api, portal
from modelpack.portal.data import slugs

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "portal"


@dataclass(frozen=True)
class Served:
    base: str  # http://127.0.0.1:PORT/
    slugs: dict[str, str]

    def url(self, path: str = "") -> str:
        return self.base + path


@contextmanager
def serve_portal(
    repositories: Sequence[str],
    store: Path,
    *,
    token: str | None = None,
    ca_file: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[Served]:
    with api.Targets(tls=api.TlsOptions(ca_file=ca_file), store_path=store, environ={}) as targets:
        srv = portal.open_server(targets, repositories, port=0, token=token, log=log)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield Served(f"http://127.0.0.1:{srv.server_address[1]}/", slugs(repositories))
        finally:
            srv.shutdown()
            srv.server_close()
            thread.join(10)


@contextmanager
def chromium() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_AVOID_STATS"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory(prefix="portal-chromium-") as profile:
        for arg in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path
