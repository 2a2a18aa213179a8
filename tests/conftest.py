"""Fixtures: a real keyhost process (`ghostpii keyhost serve`) on 127.0.0.1:0 with a real SQLite file."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ghostpii as gp

DATA = Path(__file__).parent / "data"


class KeyhostProcess:
    def __init__(self, data_dir: Path, extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ghostpii.cli",
                "keyhost",
                "serve",
                "--data",
                str(data_dir),
                "--listen",
                "127.0.0.1:0",
                *(extra or []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"keyhost did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = line.strip().rsplit(" ", 1)[-1]
        self.admin_token = (data_dir / "admin.token").read_text().strip()

    def admin(self) -> gp.Session:
        return gp.connect(self.url, self.admin_token)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def keyhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyhostProcess]:
    kh = KeyhostProcess(tmp_path_factory.mktemp("keyhost"))
    yield kh
    kh.stop()


@pytest.fixture()
def admin(keyhost: KeyhostProcess) -> gp.Session:
    return keyhost.admin()


_counter = [0]


@pytest.fixture()
def dataset(admin: gp.Session) -> gp.Dataset:
    """A fresh dataset per test, declared by its owner to hold a population of its own (so
    exact answers on it are not refused for the admin's other datasets with the same column
    names; see docs/privacy.md, "Several datasets of one owner")."""
    _counter[0] += 1
    name = f"ds{_counter[0]}_{int(time.time() * 1000)}"
    return admin.create_dataset(name, population=name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Browser tests: on failure, screenshot the page as it is and list every screenshot taken
    (PNG files under the test's tmp dir) in the test's report."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    shots: list[Path] | None = getattr(item, "console_screenshots", None)
    if not rep.failed or shots is None:
        return
    page = getattr(item, "console_page", None)
    if page is not None and shots:
        final = shots[0].parent / f"failure-{rep.when}.png"
        try:
            page.screenshot(path=str(final), full_page=True)
            shots.append(final)
        except Exception as e:  # the browser may be gone; the earlier screenshots still help
            rep.sections.append(("console screenshots", f"no final screenshot: {e}"))
    rep.sections.append(("console screenshots", "\n".join(str(p) for p in shots) or "none taken"))
