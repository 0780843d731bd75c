"""Engine processes for the tests: the real ``tallyio run`` command line."""
from __future__ import annotations

import os
import subprocess
import sys

TALLYIO = os.path.join(os.path.dirname(sys.executable), "tallyio")
TIMEOUT = 120  # seconds: generous, a loaded two-core machine


def engine(url: str, partitions: str) -> subprocess.Popen:
    """``tallyio run --source URL --partitions P``: one engine process, the real command line."""
    return subprocess.Popen([TALLYIO, "run", "-q", "--show", "0", "--source", url,
                             "--partitions", partitions],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(procs) -> list[str]:
    """Wait for every engine; each must exit 0. Their output."""
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=TIMEOUT)
        outs.append(out.decode(errors="replace"))
        assert p.returncode == 0, outs[-1][-3000:]
    return outs
