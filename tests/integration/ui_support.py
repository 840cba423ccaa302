"""Helpers for browser tests of the web UI: the platform app under uvicorn on 127.0.0.1,
Debian's chromium driven by Playwright, and a `Journey` (one browser context) that
records what a clean page must not do: log console errors or uncaught exceptions, fetch
from another host, fail a request, or answer with an error status nobody expected."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from platform_support import serve_app
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    Route,
    sync_playwright,
)

from modelcycle.server import create_app

ARTIFACTS_ENV = "MODELCYCLE_TEST_ARTIFACTS"
#: how Chromium's console reports an error answer (followed by the status)
LOAD_FAILED = "Failed to load resource: the server responded with a status of"
#: how long one step (a click, a navigation, a wait for an element) may take
STEP_TIMEOUT_MS = 20_000


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """The platform app for the workspace at ``root`` under uvicorn on a free port of
    127.0.0.1, in a thread of this process; yields its base URL."""
    with serve_app(create_app(root)) as url:
        yield url


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless, without the sandbox and background networking."""
    executable = shutil.which("chromium")
    if executable is None:
        raise AssertionError("chromium is not installed; these tests need Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


def artifacts_folder(default: Path) -> Path:
    """Where screenshots go: $MODELCYCLE_TEST_ARTIFACTS, else ``default``."""
    folder = Path(os.environ.get(ARTIFACTS_ENV) or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Journey:
    """One browser context on the site at ``origin`` and what its pages did wrong."""

    name: str
    origin: str
    context: BrowserContext
    page: Page
    screenshots: Path
    console_errors: list[tuple[str, str]] = field(default_factory=list)  # (text, url)
    page_errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # requests to other hosts (blocked)
    failed: list[str] = field(default_factory=list)  # requests that got no answer
    error_statuses: list[tuple[int, str]] = field(default_factory=list)
    screenshot: Path | None = None

    @classmethod
    def start(cls, browser: Browser, name: str, origin: str, screenshots: Path) -> Journey:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(STEP_TIMEOUT_MS)
        page = context.new_page()
        journey = cls(name, origin, context, page, screenshots)
        context.route("**/*", journey._guard)
        page.on("console", journey._console)
        page.on("pageerror", lambda e: journey.page_errors.append(str(e)))
        page.on("requestfailed", journey._request_failed)
        page.on("response", journey._response)
        return journey

    def _ours(self, url: str) -> bool:
        return url == self.origin or url.startswith(self.origin + "/")

    def _guard(self, route: Route) -> None:
        url = route.request.url
        if self._ours(url) or url.startswith("data:"):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append((message.text, message.location.get("url", "")))

    def _request_failed(self, request: Request) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.error_statuses.append((response.status, response.url))

    def url(self, path: str) -> str:
        return self.origin + path

    def path(self) -> str:
        """The current page's path and query."""
        assert self._ours(self.page.url), self.page.url
        return self.page.url[len(self.origin) :]

    def take_screenshot(self) -> Path:
        self.screenshot = self.screenshots / f"ui-journey-{self.name}.png"
        self.page.screenshot(path=str(self.screenshot), full_page=True)
        return self.screenshot

    def finish(self, expected_statuses: list[tuple[int, str]] | None = None) -> None:
        """The end of the journey: a screenshot, then nothing went wrong on the way.

        ``expected_statuses``: the error answers the journey asked for, as (status, path);
        Chromium logs each on the console, and those lines are the only ones allowed."""
        shot = self.take_screenshot()
        assert shot.stat().st_size > 1000, shot  # a real picture of the page
        assert self.foreign == [], f"requests to other hosts: {self.foreign}"
        assert self.failed == [], f"failed requests: {self.failed}"
        assert self.page_errors == [], f"uncaught exceptions: {self.page_errors}"
        expected = expected_statuses or []
        statuses = [(s, u[len(self.origin) :]) for s, u in self.error_statuses]
        assert statuses == expected, f"error answers: {statuses}"
        logged = [(f"{LOAD_FAILED} {status} ", self.url(path)) for status, path in expected]
        unexpected = list(self.console_errors)
        for prefix, url in logged:
            found = [m for m in unexpected if m[0].startswith(prefix) and m[1] == url]
            if found:
                unexpected.remove(found[0])
        assert unexpected == [], f"console errors: {unexpected}"

    def close(self) -> None:
        if self.screenshot is None:  # the journey failed on the way: show where it stopped
            with contextlib.suppress(Exception):
                self.take_screenshot()
        self.context.close()


def sign_in(journey: Journey, token: str, *, next_path: str = "/") -> None:
    """Sign in through the /login form with ``token``."""
    page = journey.page
    page.goto(journey.url(f"/login?next={next_path}"))
    page.locator("#token").fill(token)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert journey.path() == next_path, journey.page.url
