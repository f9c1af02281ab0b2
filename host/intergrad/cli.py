"""``intergrad`` command line: train, demo, info (and profile/sweep from the model)."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

from . import __version__, spec
from .spec import ArrayConfig

DESCRIPTION = ("InterGrad training on a configurable systolic array: the simulated RTL "
               "(Verilator) or the PYNQ-Z2 board.  Run 'intergrad COMMAND --help' for the "
               "options of a command.")
#: largest layer dimension `demo` accepts (a bound on its run time, not the hardware's)
MAX_DIM = 4096
#: an epoch loss above this (3x the loss of a uniform guess over the 10 digits) or not
#: finite: the training diverged and stops
DIVERGED_LOSS = 3 * math.log(10)


class UsageError(Exception):
    """A bad command-line value found before any work starts: one line, exit status 2."""


class Diverged(Exception):
    """Training produced a non-finite loss or gradient."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), no usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" for options that have a default value (not for None / flags)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _int_range(lo: int, hi: int | None = None, what: str = "a whole number"):
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} expected, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            raise argparse.ArgumentTypeError(f"must be {rng}, got {v}")
        return v
    conv.__name__ = "int"
    return conv


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number expected, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _array_type(text: str) -> str:
    try:
        ArrayConfig.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _existing_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text!r} not found")
    return text


def check_writable(path: str, what: str = "output file") -> None:
    """Raise UsageError unless ``path`` can be created or overwritten (its folder exists)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UsageError(f"{what} {path!r} is a folder")
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{what} {path!r}: {str(parent)!r} is not a folder")
    if not parent.is_dir():
        raise UsageError(f"{what} {path!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UsageError(f"{what} {path!r} is not writable")


def _check_backend(args) -> str:
    """The backend that will run (auto resolved); a pynq request without a board is a
    usage error, found before anything is loaded."""
    from .device import board_present

    backend = args.backend
    if backend == "auto":
        backend = "pynq" if board_present() else "sim"
    elif backend == "pynq" and not board_present():
        raise UsageError("--backend pynq: no PYNQ board here (no FPGA manager or no pynq "
                         "package); use --backend sim for the simulated hardware")
    if backend == "pynq" and getattr(args, "overlay", None) is None:
        from .overlays import OverlayNotFound, find_overlay
        try:
            args.overlay = find_overlay(args.bitfile)
        except OverlayNotFound as e:
            raise UsageError(str(e)) from None
    return backend


def _open(args, cfg: ArrayConfig | None = None):
    from .device import open_device
    from .driver import Accelerator

    backend = _check_backend(args)
    if backend == "sim":
        dev = open_device("sim", cfg=cfg)
    else:
        dev = open_device("pynq", bitfile=str(args.overlay))
    return dev, Accelerator(dev)


def _table(rows: list[dict], cols: list[str], fmt=None) -> str:
    fmt = fmt or {}
    cells = [[(fmt.get(c, "{}")).format(r[c]) if c in r else "" for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(cols)]
    line = "  ".join(c.rjust(w) for c, w in zip(cols, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for x in cells:
        out.append("  ".join(v.rjust(w) for v, w in zip(x, widths)))
    return "\n".join(out)


# ------------------------------------------------------------------------------ train

def cmd_train(args) -> int:
    from .nn import DeviceBackend, DigitsCNN, FloatBackend, load_digits_split, train
    from .scheduler import Scheduler

    cfg = ArrayConfig.parse(args.array, dual_mac=args.dual_mac)
    _check_backend(args)
    if args.csv:
        check_writable(args.csv, "--csv")
    data = load_digits_split(args.seed)
    if args.batch > len(data[1]):
        raise UsageError(f"--batch {args.batch} is larger than the training set "
                         f"({len(data[1])} images)")
    print(f"intergrad train: digits ({len(data[1])} train / {len(data[3])} test), "
          f"CNN conv3x3({args.channels}) -> ReLU -> maxpool -> FC(10), batch {args.batch}, "
          f"lr {args.lr}, {args.epochs} epochs, schedule {args.schedule}")
    dev, acc = _open(args, cfg)
    print(f"device: {acc.describe()}")
    net0 = DigitsCNN(args.channels, seed=args.seed)
    sched = Scheduler(acc)
    be = DeviceBackend(sched, args.schedule)
    be.name = acc.device.backend          # the progress bar names the real backend
    sim_s = (lambda: dev.sim_seconds) if hasattr(dev, "sim_seconds") else None

    def show(st):
        if not math.isfinite(st.loss) or st.loss > DIVERGED_LOSS:
            raise Diverged(f"epoch {st.epoch} loss {st.loss:.4g} > {DIVERGED_LOSS:.2f}, 3x a "
                           f"uniform guess")
        extra = ""
        if sim_s is not None and st.seconds > 0:
            extra = f", {100 * (1 - st.device_seconds / st.seconds):.0f}% in Python"
        print(f"epoch {st.epoch:3d}  loss {st.loss:.4f}  train acc {100 * st.train_acc:5.1f}%  "
              f"test acc {100 * st.test_acc:5.1f}%  ({st.seconds:.1f} s{extra})", flush=True)

    net = net0.copy()
    try:
        hist = train(net, be, data, epochs=args.epochs, batch=args.batch, lr=args.lr,
                     seed=args.seed, progress=not args.no_progress, on_epoch=show,
                     device_seconds=sim_s)
        with np.errstate(all="ignore"):
            ref = train(net0.copy(), FloatBackend(), data, epochs=args.epochs, batch=args.batch,
                        lr=args.lr, seed=args.seed, progress=False)
    except (FloatingPointError, Diverged) as e:
        dev.close()
        raise Diverged(f"training diverged ({e}); try a smaller --lr than {args.lr}") from None
    acc_hw, acc_ref = hist[-1].test_acc, ref[-1].test_acc
    ref_note = "" if math.isfinite(ref[-1].loss) else " (the float reference diverged)"
    print(f"\ntest accuracy: {100 * acc_hw:.1f}% on the array (fixed point), "
          f"{100 * acc_ref:.1f}% float reference ({100 * (acc_hw - acc_ref):+.1f} pp)"
          f"{ref_note}")

    # counters per layer and pass over the whole training run
    rows = _aggregate(sched.report)
    print(f"\nhardware counters over training (schedule {args.schedule}), per layer and pass:")
    print(_table(rows, ["layer", "pass", "jobs", "busy_cycles", "steps", "macs", "in_beats",
                        "out_beats", "wload_beats", "stall_in", "stall_out"]))
    if args.csv:
        sched.report.to_csv(args.csv)
        print(f"(per-pass records written to {args.csv})")

    # measured savings: the same batches through both schedules on the hardware
    if args.measure_steps == 0:
        dev.close()
        return 0
    print(f"\nInterGrad vs baseline, measured on the {acc.device.backend} hardware "
          f"({args.measure_steps} training steps from the same weights, both schedules):")
    meas = {}
    for name in ("baseline", "intergrad"):
        s2 = Scheduler(acc)
        b2 = DeviceBackend(s2, name)
        n2 = net.copy()
        xtr, ytr = data[0], data[1]
        rng = np.random.default_rng(args.seed + 1)
        from .nn import softmax_ce
        for _ in range(args.measure_steps):
            idx = rng.choice(len(ytr), args.batch, replace=False)
            logits, cache = n2.forward(b2, xtr[idx])
            _, dl = softmax_ce(logits, ytr[idx])
            n2.backward(b2, cache, dl)
        meas[name] = s2.report
    print(_savings_table(meas["baseline"], meas["intergrad"]))
    dev.close()
    return 0


def _aggregate(report) -> list[dict]:
    agg: dict = {}
    for r in report:
        key = (r.layer, r.pass_)
        d = agg.setdefault(key, {"layer": r.layer, "pass": r.pass_, "jobs": 0})
        d["jobs"] += r.jobs
        for k, v in r.counters.items():
            d[k] = d.get(k, 0) + v
    return list(agg.values())


def _savings_table(base, ig) -> str:
    def sums(rep, layer=None, backward=None):
        t = {"busy_cycles": 0, "beats": 0}
        for r in rep:
            if layer is not None and r.layer != layer:
                continue
            if backward is not None and (r.pass_ != "fwd") != backward:
                continue
            t["busy_cycles"] += r.counters["busy_cycles"]
            t["beats"] += r.counters["in_beats"] + r.counters["out_beats"]
        return t

    layers = sorted({r.layer for r in base})
    rows = []
    for scope, kw in [(f"{l} backward", {"layer": l, "backward": True}) for l in layers] + \
                     [("all layers, backward", {"backward": True}),
                      ("whole step (fwd+bwd)", {})]:
        b, i = sums(base, **kw), sums(ig, **kw)
        rows.append({"scope": scope,
                     "cycles base": b["busy_cycles"], "cycles IG": i["busy_cycles"],
                     "cycle ratio": b["busy_cycles"] / max(i["busy_cycles"], 1),
                     "beats base": b["beats"], "beats IG": i["beats"],
                     "beat ratio": b["beats"] / max(i["beats"], 1)})
    return _table(rows, ["scope", "cycles base", "cycles IG", "cycle ratio", "beats base",
                         "beats IG", "beat ratio"],
                  {"cycle ratio": "{:.2f}x", "beat ratio": "{:.2f}x"})


# ------------------------------------------------------------------------------ demo

def cmd_demo(args) -> int:
    """One InterGrad pass of a random FC layer on the simulated hardware vs the golden model."""
    from .golden import intergrad as ig_ref
    from .scheduler import Scheduler

    cfg = ArrayConfig.parse(args.array, dual_mac=args.dual_mac)
    _check_backend(args)
    dev, acc = _open(args, cfg)
    s = Scheduler(acc)
    rng = np.random.default_rng(args.seed)
    B, N, M = args.batch, args.n, args.m
    lim = 1 << 7
    X, W, dY = (rng.integers(-lim, lim, sh) for sh in ((B, N), (N, M), (B, M)))
    dX, dW = s.fc_backward(X, W, dY, schedule="intergrad", layer="demo")
    rdX, rdW = ig_ref(W, X, dY, acc.cfg.acc_w)
    ok = np.array_equal(dX, rdX) and np.array_equal(dW, rdW)
    print(f"InterGrad pass of a random {B}x{N}x{M} layer on {acc.describe()}:")
    print(f"  dX and dW equal the golden model bit-exactly: {ok}")
    print(_table([{"pass": r.pass_, "jobs": r.jobs, **r.counters} for r in s.report],
                 ["pass", "jobs", "busy_cycles", "steps", "macs", "in_beats", "out_beats",
                  "wload_beats", "stall_in", "stall_out"]))
    dev.close()
    return 0 if ok else 1


# ------------------------------------------------------------------------------ info

def cmd_info(args) -> int:
    from .device import board_present

    cfg = ArrayConfig.parse(args.array, dual_mac=args.dual_mac)
    _check_backend(args)
    print(f"board present: {board_present()}")
    dev, acc = _open(args, cfg)
    for k, v in acc.describe().items():
        print(f"{k:>10}: {v}")
    st = acc.status()
    print("    status: " + ", ".join(f"{k}={v}" for k, v in st.items()))
    print("  counters:")
    for k, v in acc.counters().items():
        print(f"{k:>14}: {v}")
    dev.close()
    return 0


# ------------------------------------------------------------------------------ main

def build_parser() -> argparse.ArgumentParser:
    fmt = _DefaultsFormatter
    ap = OneLineParser(prog="intergrad", description=DESCRIPTION, formatter_class=fmt)
    ap.add_argument("--version", action="version", version=f"intergrad {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                            parser_class=OneLineParser)

    def dev_args(p):
        p.add_argument("--backend", choices=["auto", "sim", "pynq"], default="auto",
                       help="hardware: the PYNQ board if present (auto), the simulated RTL "
                            "(sim) or the board (pynq)")
        p.add_argument("--array", type=_array_type,
                       default=f"{spec.DEFAULT_ROWS}x{spec.DEFAULT_COLS}",
                       help="simulated array size RxC, each 1..64 (the board reports its own)")
        p.add_argument("--dual-mac", type=int, choices=[0, 1], default=spec.DEFAULT_DUAL_MAC,
                       help="simulated InterGrad PE: two multipliers (1) or one shared (0)")
        p.add_argument("--bitfile", type=_existing_path, default=None,
                       help="overlay on the board: intergrad.bit (its .hwh beside it) or its "
                            "folder (default: $INTERGRAD_OVERLAY, the installed package's, "
                            "then overlay/ of the source tree)")
        p.add_argument("--seed", type=_int_range(0), default=0,
                       help="random seed (weights, data order, random operands)")

    p = sub.add_parser("train", help="train the digits CNN with its GEMMs on the array",
                       description="Train a small CNN on scikit-learn's digits with every GEMM "
                                   "on the array; loss and accuracy per epoch, the hardware "
                                   "counters, InterGrad's measured savings.",
                       formatter_class=fmt)
    dev_args(p)
    p.add_argument("--schedule", choices=["intergrad", "baseline"], default="intergrad",
                   help="backward pass: one interleaved InterGrad pass per layer, or separate "
                        "dX (WS) and dW (OS) passes")
    p.add_argument("--epochs", type=_int_range(1, 10000), default=8, help="training epochs")
    p.add_argument("--batch", type=_int_range(1), default=32,
                   help="minibatch size (at most the training set)")
    p.add_argument("--lr", type=_positive_float, default=0.1, help="SGD learning rate (> 0)")
    p.add_argument("--channels", type=_int_range(1, 256), default=8,
                   help="output channels of the 3x3 convolution")
    p.add_argument("--measure-steps", type=_int_range(0, 10000), default=5,
                   help="training steps run under both schedules to measure savings (0: skip)")
    p.add_argument("--csv", default=None,
                   help="write the per-pass counter records to this CSV file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="one InterGrad pass of a random layer vs the golden model",
                       description="One InterGrad pass (dX and dW of a random FC layer) on the "
                                   "array, checked bit-exactly against the golden model.",
                       formatter_class=fmt)
    dev_args(p)
    p.add_argument("--batch", type=_int_range(1, MAX_DIM), default=64,
                   help="batch B of the layer (rows of X and dY)")
    p.add_argument("--n", type=_int_range(1, MAX_DIM), default=20,
                   help="input features N (columns of X, rows of W)")
    p.add_argument("--m", type=_int_range(1, MAX_DIM), default=12,
                   help="output features M (columns of W and dY)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("info", help="backend, hardware build and counters",
                       description="The backend, the hardware build read from the core's ID "
                                   "and configuration registers, its status and counters.",
                       formatter_class=fmt)
    dev_args(p)
    p.set_defaults(func=cmd_info)

    try:
        from . import cli_model
    except ImportError:
        cli_model = None
    if cli_model is not None and hasattr(cli_model, "add_subcommands"):
        cli_model.add_subcommands(sub)
    return ap


def _one_line(e: BaseException) -> str:
    text = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError quotes its text
    return " ".join(str(text).split()) or type(e).__name__


def main(argv=None) -> int:
    """Exit status: 0 success, 1 a failed check or run (a diverging training, a device
    error), 2 bad command-line input (one line on stderr, before any work), 130 Ctrl-C.
    ``INTERGRAD_DEBUG=1`` shows the traceback of an unexpected error."""
    from .device.base import DeviceError
    from .rtl import ToolchainError

    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:          # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 2
    where = f"intergrad {args.cmd}"
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UsageError, argparse.ArgumentTypeError) as e:
        print(f"{where}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"{where}: {_one_line(e)}", file=sys.stderr)
        return 1
    except (ToolchainError, DeviceError, TimeoutError) as e:
        print(f"{where}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except (ValueError, OverflowError, RuntimeError, KeyError, FileNotFoundError,
            OSError) as e:
        if os.environ.get("INTERGRAD_DEBUG"):
            raise
        print(f"{where}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback by default
        if os.environ.get("INTERGRAD_DEBUG"):
            raise
        print(f"{where}: internal error: {type(e).__name__}: {_one_line(e)} "
              f"(INTERGRAD_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
