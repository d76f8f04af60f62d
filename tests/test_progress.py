"""frame.progress: a bar with the time left on a terminal, nothing in a log file."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = ("import time\nfrom frame.progress import progress_bar, say\n"
        "for i in progress_bar(range(3), 'work', unit='step'):\n    time.sleep(0.2)\n    say(f'row {i}')\n")


def test_quiet_in_a_log_file(tmp_path):
    log = tmp_path / "log.txt"
    with open(log, "w") as handle:
        done = subprocess.run([sys.executable, "-c", CODE], stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, timeout=60)
    assert done.returncode == 0
    assert log.read_text() == "row 0\nrow 1\nrow 2\n"  # the rows, no bar


def test_bar_with_time_left_on_a_terminal():
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    done = subprocess.run([sys.executable, "-c", CODE], stdout=child, stderr=child, cwd=ROOT, timeout=60)
    os.close(child)
    text = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal is closed and drained
            break
        if not chunk:
            break
        text += chunk
    os.close(main)
    assert done.returncode == 0
    screen = text.decode(errors="replace")
    assert re.search(r"work: +\d+%\|.*\| [12]/3 \[00:0\d<00:0\d", screen), screen  # [elapsed<time left]
    assert "row 2" in screen
