"""The demo's quiet console: one status line rewritten in place on a terminal, plain lines every few seconds
elsewhere, and the log in a file (errors alone on the console)."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import pytest

from app.console import NOISY, StatusLine, log_to_file


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_status_line_is_rewritten_in_place() -> None:
    out = Terminal()
    line = StatusLine(out)
    line.show("backfill 10%")
    line.show("live | 3 msg/s")
    line.end()
    assert out.getvalue() == "\r\x1b[2Kbackfill 10%\r\x1b[2Klive | 3 msg/s\n"


def test_elsewhere_it_is_a_plain_line_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.0, 3.0, 10.5, 10.5, 11.0])
    monkeypatch.setattr("app.console.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    line = StatusLine(out, every_s=10.0)
    line.show("first")  # shown (at 0)
    line.show("too soon")  # 3 s later: not shown
    line.show("ten seconds on")  # shown (at 10.5)
    line.show("live", now=True)  # a new phase: shown at once
    line.end()
    assert out.getvalue() == "first\nten seconds on\nlive\n"


def test_the_log_goes_to_a_file_and_only_errors_to_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, {n: logging.getLogger(n).level for n in NOISY})
    try:
        path = tmp_path / "logs" / "demo.log"
        log_to_file(path, verbose=False)
        log = logging.getLogger("alerts.channels")
        log.warning("notify x to W-1: not delivered after 1 attempts (phone +8613912345678)")
        log.error("something broke")
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # the test configuration makes warnings errors
            warnings.warn("a library's own warning", UserWarning, stacklevel=1)
        for h in root.handlers:
            h.flush()
        text = path.read_text(encoding="utf-8")
        assert "not delivered" in text and "something broke" in text and "a library's own warning" in text
        assert "+8613912345678" not in text  # the redacting filter is on the file too
        err = capsys.readouterr().err
        assert "something broke" in err and "not delivered" not in err and "library" not in err
    finally:
        logging.captureWarnings(False)
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        handlers, level, noisy = saved
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
        for n, lv in noisy.items():
            logging.getLogger(n).setLevel(lv)
