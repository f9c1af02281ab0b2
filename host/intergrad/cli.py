"""``intergrad`` command line: train, demo, info (and profile/sweep from the model)."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import spec
from .spec import ArrayConfig


def _open(args, cfg: ArrayConfig | None = None):
    from .device import open_device
    from .driver import Accelerator

    from .device import board_present

    backend = args.backend
    if backend == "auto":
        backend = "pynq" if board_present() else "sim"
    if backend == "sim":
        dev = open_device("sim", cfg=cfg)
    else:
        dev = open_device("pynq", bitfile=getattr(args, "bitfile", None))
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
    data = load_digits_split(args.seed)
    print(f"intergrad train: digits ({len(data[1])} train / {len(data[3])} test), "
          f"CNN conv3x3({args.channels}) -> ReLU -> maxpool -> FC(10), batch {args.batch}, "
          f"lr {args.lr}, {args.epochs} epochs, schedule {args.schedule}")
    dev, acc = _open(args, cfg)
    print(f"device: {acc.describe()}")
    net0 = DigitsCNN(args.channels, seed=args.seed)
    sched = Scheduler(acc)
    be = DeviceBackend(sched, args.schedule)
    sim_s = (lambda: dev.sim_seconds) if hasattr(dev, "sim_seconds") else None

    def show(st):
        extra = ""
        if sim_s is not None and st.seconds > 0:
            extra = f", {100 * (1 - st.device_seconds / st.seconds):.0f}% in Python"
        print(f"epoch {st.epoch:3d}  loss {st.loss:.4f}  train acc {100 * st.train_acc:5.1f}%  "
              f"test acc {100 * st.test_acc:5.1f}%  ({st.seconds:.1f} s{extra})", flush=True)

    net = net0.copy()
    hist = train(net, be, data, epochs=args.epochs, batch=args.batch, lr=args.lr, seed=args.seed,
                 progress=not args.no_progress, on_epoch=show, device_seconds=sim_s)
    ref = train(net0.copy(), FloatBackend(), data, epochs=args.epochs, batch=args.batch,
                lr=args.lr, seed=args.seed, progress=False)
    acc_hw, acc_ref = hist[-1].test_acc, ref[-1].test_acc
    print(f"\ntest accuracy: {100 * acc_hw:.1f}% on the array (fixed point), "
          f"{100 * acc_ref:.1f}% float reference ({100 * (acc_hw - acc_ref):+.1f} pp)")

    # counters per layer and pass over the whole training run
    rows = _aggregate(sched.report)
    print(f"\nhardware counters over training (schedule {args.schedule}), per layer and pass:")
    print(_table(rows, ["layer", "pass", "jobs", "busy_cycles", "steps", "macs", "in_beats",
                        "out_beats", "wload_beats", "stall_in", "stall_out"]))
    if args.csv:
        sched.report.to_csv(args.csv)
        print(f"(per-pass records written to {args.csv})")

    # measured savings: the same batches through both schedules on the hardware
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
    ap = argparse.ArgumentParser(prog="intergrad", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def dev_args(p):
        p.add_argument("--backend", choices=["auto", "sim", "pynq"], default="auto",
                       help="hardware: the PYNQ board if present (auto), or simulated (sim)")
        p.add_argument("--array", default=f"{spec.DEFAULT_ROWS}x{spec.DEFAULT_COLS}",
                       help="simulated array size RxC (the board reports its own)")
        p.add_argument("--dual-mac", type=int, choices=[0, 1], default=spec.DEFAULT_DUAL_MAC,
                       help="simulated InterGrad PE: two multipliers (1) or one shared (0)")
        p.add_argument("--bitfile", default=None,
                       help="overlay bitstream on the board (default: overlay/intergrad.bit)")
        p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("train", help="train the digits CNN with its GEMMs on the array")
    dev_args(p)
    p.add_argument("--schedule", choices=["intergrad", "baseline"], default="intergrad")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--measure-steps", type=int, default=5,
                   help="training steps run under both schedules to measure savings")
    p.add_argument("--csv", help="write the per-pass counter records to this CSV file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="one InterGrad pass of a random layer vs the golden model")
    dev_args(p)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--m", type=int, default=12)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("info", help="backend, hardware build and counters")
    dev_args(p)
    p.set_defaults(func=cmd_info)

    try:
        from . import cli_model
    except ImportError:
        cli_model = None
    if cli_model is not None and hasattr(cli_model, "add_subcommands"):
        cli_model.add_subcommands(sub)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OverflowError, TimeoutError, RuntimeError) as e:
        print(f"intergrad {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    return rc


if __name__ == "__main__":
    sys.exit(main())
