"""The program a cell's own process runs: ``python -m odebench_executors.child FD``.

The job arrives pickled on stdin; progress messages and the row go back as pickles over the
inherited file descriptor FD (stdout and stderr stay the cell's own, for its prints and
warnings).  Ctrl-C is the coordinator's to handle: it stops this process itself.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd, readable=False)
    job = pickle.load(sys.stdin.buffer)
    from odebench.execution import execute_job

    row = execute_job(job, progress=lambda done, total: conn.send(("progress", done, total)))
    conn.send(("row", row))
    conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the row is sent: skip the interpreter's (and frameworks') slow teardown


if __name__ == "__main__":
    main(int(sys.argv[1]))
