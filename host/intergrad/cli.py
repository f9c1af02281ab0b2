"""``intergrad`` command line: train, evaluate, demo, info (and profile/sweep from the model)."""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

import numpy as np

from . import __version__, spec
from .registry import BACKENDS, DEFAULT_BACKEND, DEFAULT_SCHEDULE, SCHEDULES, help_text
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


def _unit_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number expected, got {text!r}") from None
    if not (0.0 <= v < 1.0):
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return v


#: --net choices (intergrad.layers.NETWORKS, listed here so --help needs no numpy import)
NET_NAMES = {"digits": "conv3x3(8) -> maxpool -> FC(10)",
             "lenet": "LeNet-class, 2 conv3x3 + 2 FC",
             "lenet5": "the zoo's LeNet-5 at 32x32 (inputs padded/resized)"}


def _array_type(text: str) -> ArrayConfig:
    try:
        return ArrayConfig.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _array_config(args) -> ArrayConfig:
    """--array with --dual-mac."""
    return dataclasses.replace(args.array, dual_mac=args.dual_mac)


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
    """The backend that will run (auto resolved); one that cannot run here (a pynq request
    without a board or an overlay) is a usage error, found before anything is loaded."""
    from .device import BackendUnavailable, resolve_backend

    try:
        return resolve_backend(args.backend, args.bitfile)[0]
    except BackendUnavailable as e:
        raise UsageError(str(e)) from None


def _open(args, cfg: ArrayConfig | None = None):
    """The accelerator on the backend asked for (``accel.device`` is its device)."""
    from .device import BackendUnavailable, open_accelerator

    try:
        return open_accelerator(args.backend, cfg, bitfile=args.bitfile)
    except BackendUnavailable as e:
        raise UsageError(str(e)) from None


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

#: --bits -> the matching RTL build's (DATA_W, ACC_W)
PRECISIONS = {16: (16, 32), 8: (8, 20)}


def _train_setup(args, net_name=None, net_config=None, precision=None):
    """Data, network, array build for train/evaluate; every bad input is a UsageError."""
    from . import layers as L
    from .data import DataError, fit_images, load

    bits = args.bits if precision is None else int(precision.lstrip("int"))
    d, a = PRECISIONS[bits]
    cfg = dataclasses.replace(_array_config(args), data_w=d, acc_w=a)
    try:
        data = load(args.data, args.seed)
    except DataError as e:
        raise UsageError(f"--data: {e}") from None
    name = net_name or args.net
    if getattr(args, "limit", 0):
        data = (data[0][:args.limit], data[1][:args.limit], data[2], data[3])
    want = L.NETWORKS[name][1]
    if want is not None:
        data = (fit_images(data[0], want), data[1], fit_images(data[2], want), data[3])
    kw = dict(net_config or {})
    if net_config is None and getattr(args, "channels", None) is not None:
        if name == "lenet5":
            raise UsageError("--channels: lenet5 has the zoo's fixed widths (6, 16)")
        kw["channels"] = args.channels
    kw.pop("classes", None)
    try:
        net = L.build(name, data[0].shape[1:], 10, args.seed, **kw)
    except ValueError as e:
        raise UsageError(f"--net {name}: {e}") from None
    return data, net, cfg, f"int{bits}"


def _check_build(accel, cfg) -> None:
    if (accel.cfg.data_w, accel.cfg.acc_w) != (cfg.data_w, cfg.acc_w):
        raise UsageError(f"the hardware is a {accel.cfg.data_w}/{accel.cfg.acc_w}-bit build, "
                         f"--bits asks for {cfg.data_w}/{cfg.acc_w}")


def _layer_table(report, cfg) -> str:
    return _table(report.by_layer_pass(cfg), ["layer", "pass", "jobs", "busy_cycles", "macs", "MAC util", "in_beats",
                         "out_beats", "wload_beats", "stall_in", "stall_out"],
                  {"MAC util": "{:.0f}%"})


def cmd_train(args) -> int:
    from . import checkpoint
    from .nn import SGD

    _check_backend(args)
    if args.csv:
        check_writable(args.csv, "--csv")
    if args.save:
        check_writable(args.save, "--save")
    meta = None
    if args.load:
        try:
            meta, _, _ = checkpoint.read(args.load)
            checkpoint.check_compatible(meta, args.load, precision=f"int{args.bits}")
        except checkpoint.CheckpointError as e:
            raise UsageError(f"--load: {e}") from None
        if meta["net"] != args.net:
            raise UsageError(f"--load: {args.load} is a checkpoint of network {meta['net']}, "
                             f"not {args.net} (use --net {meta['net']})")
    data, net0, cfg, precision = _train_setup(args, net_config=meta and meta["config"])
    if args.batch > len(data[1]):
        raise UsageError(f"--batch {args.batch} is larger than the training set "
                         f"({len(data[1])} images)")
    opt0 = SGD(net0.params(), args.lr, args.momentum)
    rng0 = np.random.default_rng(args.seed)
    start = 1
    if args.load:
        try:
            meta = checkpoint.restore(args.load, net0, opt0, precision=precision, rng=rng0)
        except checkpoint.CheckpointError as e:
            raise UsageError(f"--load: {e}") from None
        start = meta["epoch"] + 1
    print(f"intergrad train: {args.data} ({len(data[1])} train / {len(data[3])} test, "
          f"{'x'.join(map(str, data[0].shape[1:]))}), net {args.net}: {net0.describe()}")
    print(f"  batch {args.batch}, lr {args.lr} (decay {args.decay}), momentum {args.momentum}, "
          f"epochs {start}..{args.epochs}, schedule {args.schedule}, {precision} operands "
          f"(DATA_W {cfg.data_w}, ACC_W {cfg.acc_w} accumulators), "
          f"{'stochastic' if args.stochastic_rounding else 'nearest'} rounding of gradients, "
          f"float32 master weights on the host")
    if args.load:
        print(f"  resumed from {args.load} after epoch {meta['epoch']}")
    accel, be = _train_engine(args, cfg, meta)
    try:
        return _train(args, accel, be, data, net0, opt0, rng0, start, precision, cfg)
    finally:
        accel.device.close()


def _train_engine(args, cfg, meta):
    """The accelerator and the GEMM engine training runs on (``engine.s.report`` collects
    the counters).  A data-parallel run opens one accelerator per worker here and returns
    an engine over all of them."""
    from .engine import DeviceEngine
    from .scheduler import Scheduler

    accel = _open(args, cfg)
    try:
        _check_build(accel, cfg)
    except UsageError:
        accel.device.close()
        raise
    print(f"device: {accel.describe()}")
    be = DeviceEngine(Scheduler(accel), args.schedule, stochastic=args.stochastic_rounding,
                      seed=args.seed)
    if args.load and be.rng is not None and meta.get("sr_rng"):
        be.rng.bit_generator.state = meta["sr_rng"]
    be.name = accel.device.backend          # the progress bar names the real backend
    return accel, be


def _train(args, accel, be, data, net0, opt0, rng0, start, precision, cfg) -> int:
    """Train on ``be`` and the float twin, print the epochs, the accuracies, the counters
    and the measured schedule comparison."""
    from . import checkpoint, nn
    from .engine import FloatEngine
    from .nn import SGD

    dev = accel.device
    sched = be.s                    # its report: the counters of the whole run
    sim_s = (lambda: dev.sim_seconds) if hasattr(dev, "sim_seconds") else None
    net = net0.copy()
    opt = SGD(net.params(), args.lr, args.momentum)
    opt.load_state_dict(opt0.state_dict())
    rng = np.random.default_rng()
    rng.bit_generator.state = rng0.bit_generator.state
    if args.workers != 1:   # data parallel: one device per worker (intergrad.parallel)
        from .parallel import DataParallel
        try:
            dp = DataParallel(net, cfg, workers=args.workers or None, executor=args.executor,
                              schedule=args.schedule, stochastic=args.stochastic_rounding,
                              seed=args.seed, rng_state=be.rng and be.rng.bit_generator.state,
                              backend=accel.device.backend)
        except ImportError as e:          # --executor ray without Ray
            raise UsageError(str(e)) from None
        print(f"data parallel: {dp.describe()}")
        net, be, sched, sim_s = dp.net, dp.engine, dp, dp.sim_seconds

    def show(st):
        if not math.isfinite(st.loss) or st.loss > DIVERGED_LOSS:
            raise Diverged(f"epoch {st.epoch} loss {st.loss:.4g} > {DIVERGED_LOSS:.2f}, 3x a "
                           f"uniform guess")
        extra = ""
        if sim_s is not None and st.seconds > 0:
            extra = f", {100 * (1 - st.device_seconds / st.seconds):.0f}% in Python"
        print(f"epoch {st.epoch:3d}  loss {st.loss:.4f}  train acc {100 * st.train_acc:5.1f}%  "
              f"test acc {100 * st.test_acc:5.1f}%  ({st.seconds:.1f} s{extra})", flush=True)
        if args.save:
            checkpoint.save(args.save, net, opt, epoch=st.epoch, precision=precision, rng=rng,
                            sr_rng=be.rng)

    if start > args.epochs:
        print(f"the checkpoint already has {start - 1} epochs (>= --epochs {args.epochs}): "
              f"nothing to train")
        return 0
    try:
        hist = nn.train(net, be, data, epochs=args.epochs, batch=args.batch, lr=args.lr,
                        seed=args.seed, progress=not args.no_progress, on_epoch=show,
                        device_seconds=sim_s, opt=opt, rng=rng, start_epoch=start,
                        decay=args.decay)
        with np.errstate(all="ignore"):
            ref_opt = SGD(net0.params(), args.lr, args.momentum)
            ref_opt.load_state_dict(opt0.state_dict())
            try:
                ref = nn.train(net0, FloatEngine(), data, epochs=args.epochs, batch=args.batch,
                               lr=args.lr, seed=args.seed, progress=False, opt=ref_opt,
                               rng=rng0, start_epoch=start, decay=args.decay)
            except FloatingPointError:
                ref = None
    except (FloatingPointError, Diverged) as e:
        raise Diverged(f"training diverged ({e}); try a smaller --lr than {args.lr}") from None
    acc_hw = hist[-1].test_acc
    if ref is not None and math.isfinite(ref[-1].loss):
        acc_ref = ref[-1].test_acc
        print(f"\ntest accuracy: {100 * acc_hw:.1f}% on the array ({precision}), "
              f"{100 * acc_ref:.1f}% float twin ({100 * (acc_hw - acc_ref):+.1f} pp)")
    else:
        print(f"\ntest accuracy: {100 * acc_hw:.1f}% on the array ({precision}); the float "
              f"twin diverged")
    if args.save:
        print(f"checkpoint: {args.save} (epoch {hist[-1].epoch}; resume with --load)")
    bits = ", ".join(f"{l}/{p} {min(v.values())}" for (l, p), v in be.bits_used.items())
    print(f"magnitude bits used (fewest per layer/pass, of {cfg.data_w - 1}): {bits}")

    # counters per layer and pass over the whole training run
    print(f"\nhardware counters over training (schedule {args.schedule}), per layer and pass:")
    print(_layer_table(sched.report, accel.cfg))
    if args.csv:
        sched.report.to_csv(args.csv)
        print(f"(per-pass records written to {args.csv})")

    # measured savings: the same batches through both schedules on the hardware
    if args.measure_steps == 0:
        return 0
    print(f"\nInterGrad vs baseline, measured on the {dev.backend} hardware "
          f"({args.measure_steps} training steps from the same weights, both schedules):")
    cmp = nn.measure_schedules(net, accel, data[0], data[1], steps=args.measure_steps,
                               batch=args.batch, seed=args.seed + 1)
    print(_savings_table(cmp))
    return 0


def cmd_evaluate(args) -> int:
    """Test accuracy of a checkpoint on the array (its precision) and in float."""
    from . import checkpoint
    from .engine import DeviceEngine, FloatEngine
    from .nn import evaluate
    from .scheduler import Scheduler

    _check_backend(args)
    try:
        meta, params, _ = checkpoint.read(args.load)
    except checkpoint.CheckpointError as e:
        raise UsageError(f"--load: {e}") from None
    data, net, cfg, precision = _train_setup(args, meta["net"], meta["config"], meta["precision"])
    try:
        checkpoint.restore(args.load, net, precision=precision)
    except checkpoint.CheckpointError as e:
        raise UsageError(f"--load: {e}") from None
    print(f"intergrad evaluate: {args.load} (net {meta['net']}, {precision}, epoch "
          f"{meta['epoch']}) on {args.data} ({len(data[3])} test images)")
    accel = _open(args, cfg)
    _check_build(accel, cfg)
    sched = Scheduler(accel)
    a_hw = evaluate(net, DeviceEngine(sched), data[2], data[3])
    a_fl = evaluate(net, FloatEngine(), data[2], data[3])
    print(f"test accuracy: {100 * a_hw:.1f}% on the array ({precision}), {100 * a_fl:.1f}% float")
    print(_layer_table(sched.report, accel.cfg))
    accel.device.close()
    return 0


def _savings_table(cmp) -> str:
    return _table(cmp.rows(), ["scope", "cycles base", "cycles IG", "cycle ratio", "beats base",
                               "beats IG", "beat ratio"],
                  {"cycle ratio": "{:.2f}x", "beat ratio": "{:.2f}x"})


# ------------------------------------------------------------------------------ demo

def cmd_demo(args) -> int:
    """One InterGrad pass of a random FC layer on the simulated hardware vs the exact
    products wrapped to ACC_W."""
    from .scheduler import Scheduler, gemm_reference

    cfg = _array_config(args)
    _check_backend(args)
    accel = _open(args, cfg)
    s = Scheduler(accel)
    rng = np.random.default_rng(args.seed)
    B, N, M = args.batch, args.n, args.m
    lim = 1 << 7
    X, W, dY = (rng.integers(-lim, lim, sh) for sh in ((B, N), (N, M), (B, M)))
    dX, dW = s.fc_backward(X, W, dY, schedule="intergrad", layer="demo")
    rdX = gemm_reference(dY, W.T, accel.cfg.acc_w)
    rdW = gemm_reference(X.T, dY, accel.cfg.acc_w)
    ok = np.array_equal(dX, rdX) and np.array_equal(dW, rdW)
    print(f"InterGrad pass of a random {B}x{N}x{M} layer on {accel.describe()}:")
    print(f"  dX and dW equal the exact products wrapped to ACC_W, bit-exactly: {ok}")
    print(_table([{"pass": r.pass_, "jobs": r.jobs, **r.counters} for r in s.report],
                 ["pass", "jobs", "busy_cycles", "steps", "macs", "in_beats", "out_beats",
                  "wload_beats", "stall_in", "stall_out"]))
    accel.device.close()
    return 0 if ok else 1


# ------------------------------------------------------------------------------ info

def cmd_info(args) -> int:
    from .device import board_present

    cfg = _array_config(args)
    _check_backend(args)
    print(f"board present: {board_present()}")
    accel = _open(args, cfg)
    for k, v in accel.describe().items():
        print(f"{k:>10}: {v}")
    st = accel.status()
    print("    status: " + ", ".join(f"{k}={v}" for k, v in st.items()))
    print("  counters:")
    for k, v in accel.counters().items():
        print(f"{k:>14}: {v}")
    accel.device.close()
    return 0


# ------------------------------------------------------------------------------ main

def build_parser() -> argparse.ArgumentParser:
    fmt = _DefaultsFormatter
    ap = OneLineParser(prog="intergrad", description=DESCRIPTION, formatter_class=fmt)
    ap.add_argument("--version", action="version", version=f"intergrad {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                            parser_class=OneLineParser)

    def train_args(p):
        p.add_argument("--data", default="digits",
                       help="digits (scikit-learn's, bundled), mnist:DIR (IDX files, raw or "
                            ".gz) or cifar10:DIR (binary batches)")
        p.add_argument("--limit", type=_int_range(0), default=0,
                       help="use only the first N training images (0: all)")

    def dev_args(p):
        p.add_argument("--backend", choices=list(BACKENDS), default=DEFAULT_BACKEND,
                       help="hardware: " + help_text(BACKENDS))
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

    p = sub.add_parser("train", help="train a CNN with its GEMMs on the array",
                       description="Train a CNN (--net) on digits, MNIST or CIFAR-10 with every "
                                   "GEMM on the array; loss and accuracy per epoch against a "
                                   "float twin, the hardware counters per layer and pass, "
                                   "InterGrad's measured savings per layer.",
                       formatter_class=fmt)
    dev_args(p)
    train_args(p)
    p.add_argument("--schedule", choices=list(SCHEDULES), default=DEFAULT_SCHEDULE,
                   help="backward pass per layer: " + help_text(SCHEDULES))
    p.add_argument("--net", choices=list(NET_NAMES), default="digits",
                   help="network: " + "; ".join(f"{k}: {v}" for k, v in NET_NAMES.items()))
    p.add_argument("--bits", type=int, choices=sorted(PRECISIONS, reverse=True), default=16,
                   help="operand width, the RTL build: 16 (ACC_W 32) or 8 (ACC_W 20)")
    p.add_argument("--stochastic-rounding", action="store_true",
                   help="round gradients stochastically (seeded by --seed, reproducible)")
    p.add_argument("--epochs", type=_int_range(1, 10000), default=8,
                   help="training epochs (in total, when resuming with --load)")
    p.add_argument("--batch", type=_int_range(1), default=32,
                   help="minibatch size (at most the training set)")
    p.add_argument("--lr", type=_positive_float, default=0.1, help="SGD learning rate (> 0)")
    p.add_argument("--momentum", type=_unit_float, default=0.0, help="SGD momentum in [0, 1)")
    p.add_argument("--decay", choices=["none", "cosine"], default="none",
                   help="learning-rate schedule over the epochs")
    p.add_argument("--channels", type=_int_range(1, 256), default=None,
                   help="first conv layer's output channels (digits, lenet; default 8)")
    p.add_argument("--save", default=None,
                   help="write a checkpoint (weights, optimizer state) after every epoch")
    p.add_argument("--load", type=_existing_path, default=None,
                   help="resume from this checkpoint (same --net and --bits)")
    p.add_argument("--measure-steps", type=_int_range(0, 10000), default=5,
                   help="training steps run under both schedules to measure savings (0: skip)")
    p.add_argument("--csv", default=None,
                   help="write the per-pass counter records to this CSV file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=_int_range(0, 1024), default=1,
                   help="simulated devices, one worker process each, sharing every batch "
                        "(0: one per core); the weights are those of one device")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where the --workers run: processes here, or Ray actors (a local "
                        "instance or $RAY_ADDRESS, docs/cluster.md)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy of a checkpoint on the array",
                       description="Load a checkpoint written by 'train --save' and measure its "
                                   "test accuracy on the array (at its precision) and in float.",
                       formatter_class=fmt)
    dev_args(p)
    train_args(p)
    p.add_argument("--load", type=_existing_path, required=True, help="checkpoint file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="one InterGrad pass of a random layer vs exact products",
                       description="One InterGrad pass (dX and dW of a random FC layer) on the "
                                   "array, checked bit-exactly against the exact products "
                                   "wrapped to ACC_W.",
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
