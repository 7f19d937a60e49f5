"""Chromium for the console tests: the system's (Playwright cannot download its own here),
or a loud failure saying how to install it; never a silent skip."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def browser_or_fail() -> Iterator[Any]:
    """A headless Chromium driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed: make install (pip install -e '.[dev]')")
    path = chromium_path()
    if path is None:
        pytest.fail(
            "no Chromium on this machine: the console tests need a real browser; "
            "apt-get install -y chromium (make test does it where it may)"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
