"""A real headless browser for the tests: Debian's ``chromium`` driven over the DevTools protocol (a
websocket; the ``websockets`` package), without Selenium or Playwright.

    with Chromium(tmp_path) as browser:
        page = browser.open("http://127.0.0.1:8002/")    # waits for the load event
        page.problems                                    # console errors, exceptions, failed loads
        page.screenshot(tmp_path / "status.png")
        page.evaluate("document.title")

``make browser`` installs chromium (apt-get, as root); where it is missing, ``chromium_or_skip`` skips the test
and says how to get it.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
    "--window-size=1400,1000",
]


def chromium_or_skip() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH: `make browser` installs Debian's (apt-get install chromium, as root)")


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session
        self.problems: list[str] = []  # console errors and warnings, uncaught exceptions, failed loads

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def wait(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.browser.wait(self.session, method, timeout)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path


class Chromium:
    def __init__(self, profile: Path) -> None:
        binary = chromium_or_skip()
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        found: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_stderr, args=(found,), daemon=True).start()
        try:
            url = found.get(timeout=60)
        except queue.Empty:
            self.close()
            raise RuntimeError("chromium did not start:\n" + "".join(self.log[-20:])) from None
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, max_size=None, open_timeout=30))
        self._ids = itertools.count(1)
        self._events: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._pages: dict[str, Page] = {}

    def _read_stderr(self, found: queue.Queue[str]) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                found.put(m.group(1))

    def _receive(self, timeout: float) -> dict[str, Any]:
        message = json.loads(self.ws.recv(timeout=timeout))
        session = message.get("sessionId", "")
        if "method" in message:
            page = self._pages.get(session)
            if page is not None:
                _collect(page, message["method"], message.get("params", {}))
            self._events.setdefault(session, []).append((message["method"], message.get("params", {})))
        return message

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        end = time.monotonic() + 60
        while True:
            reply = self._receive(max(0.1, end - time.monotonic()))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait(self, session: str, method: str, timeout: float) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            events = self._events.get(session, [])
            for i, (name, params) in enumerate(events):
                if name == method:
                    del events[: i + 1]
                    return params
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {method} within {timeout} s")
            try:
                self._receive(remaining)
            except TimeoutError:
                continue

    def open(self, url: str) -> Page:
        """A new tab that loads ``url``; returns once its load event fired."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = self._pages[session] = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        self._events[session] = []
        page.send("Page.navigate", url=url)
        page.wait("Page.loadEventFired")
        return page

    def close(self) -> None:
        if getattr(self, "_stack", None) is not None:
            self._stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _collect(page: Page, method: str, params: dict[str, Any]) -> None:
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
        text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
        page.problems.append(f"console.{params['type']}: {text}")
    elif method == "Runtime.exceptionThrown":
        page.problems.append(f"exception: {params.get('exceptionDetails', {}).get('text', '')}")
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
        entry = params["entry"]
        page.problems.append(
            f"{entry.get('source')} {entry['level']}: {entry.get('text')} {entry.get('url', '')}"
        )
