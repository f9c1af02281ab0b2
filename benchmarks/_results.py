"""Benchmark output: printed always; written to ``benchmarks/results/<name>.txt`` (the
committed figures the README quotes) only when the script is given ``--write``."""
from __future__ import annotations

import contextlib
import datetime
import io
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def add_write_option(ap, name: str) -> None:
    ap.add_argument("--write", action="store_true",
                    help=f"also write the output to benchmarks/results/{name}.txt, replacing "
                         f"the committed figures (default: print only)")


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


@contextlib.contextmanager
def results_file(name: str, write: bool, argv=None):
    """Print as usual; with ``write``, the same text (under a header naming the command,
    date and machine) goes to results/<name>.txt when the block ends without error."""
    if not write:
        yield
        return
    buf = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, buf)):
        yield
    args = " ".join(sys.argv[1:] if argv is None else argv)
    head = (f"# python benchmarks/{name}.py {args} ({datetime.date.today()}, "
            f"{platform.machine()}, {os.cpu_count()} CPUs)\n")
    out = RESULTS / f"{name}.txt"
    out.write_text(head + buf.getvalue())
    print(f"(written to {out})", file=sys.stderr)
