"""The report page as the tests read it: its data, checked for balanced tags and nothing
fetched from outside; and headless Chromium to run it."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

VOID = {"meta", "input", "br", "img"}


class Checker(HTMLParser):
    """Fails on unbalanced tags and on anything fetched from outside the page."""

    def __init__(self):
        super().__init__()
        self.stack, self.script, self.external = [], "", []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("data:"):
                self.external.append(value)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.script += data


def data_of(page: str) -> list[dict]:
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [] and checker.external == []
    start = checker.script.index("const DATA = ") + len("const DATA = ")
    return json.loads(checker.script[start : checker.script.index(";\nconst grid")])


CHROMIUM_FLAGS = [  # headless, and no calls to Google's servers on a closed network
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(profile: Path, *args: str, tries: int = 2) -> str:
    """Headless Chromium's stdout for these arguments (a fresh profile folder each try).
    Now and then headless Chromium hangs at start on this kind of machine (a page that loads
    in 2 s timed out after 120 s once in a quiet CI run): a hung browser is tried again,
    since the page is under test, not the browser."""
    for attempt in range(tries):
        command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}-{attempt}", *args]
        try:
            done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
            return done.stdout
        except subprocess.TimeoutExpired:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")
