"""cocotb side of benchmarks/sim_speed.py: one long InterGrad job driven cycle by cycle from
Python (cocotbext-axi source/sink, no stalls); writes cycles and wall time to IG_BENCH_OUT."""
import json
import logging
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from intergrad import spec
from intergrad.core import Job, pack_beats, register_writes, unpack_beats
from intergrad.golden import ArrayModel

CFG = spec.ArrayConfig(int(os.environ["IG_ROWS"]), int(os.environ["IG_COLS"]),
                       int(os.environ["IG_DATA_W"]), int(os.environ["IG_ACC_W"]),
                       int(os.environ["IG_DUAL_MAC"]))


@cocotb.test()
async def bench_long_job(dut):
    B = int(os.environ.get("IG_BENCH_B", "20000"))
    logging.getLogger("cocotb.intergrad_top").setLevel(logging.WARNING)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    m = ArrayModel(CFG)
    R, C = CFG.rows, CFG.cols
    job = Job("IG", B, R, C, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
    rng = np.random.default_rng(0)
    lanes = m.job_input(job, weights=rng.integers(-99, 99, (R, C)),
                        left=rng.integers(-99, 99, (B, R)), top=rng.integers(-99, 99, (B, C)))
    expect = m.run(job, lanes)
    for name, value in register_writes(job):
        await axil.write_dword(spec.REG[name].offset, value)
    data = pack_beats(lanes, CFG.data_w, CFG.in_axis_bits)
    cycles = 0

    async def count():
        nonlocal cycles
        while True:
            await RisingEdge(dut.clk)
            cycles += 1

    t0 = time.perf_counter()
    counter = cocotb.start_soon(count())
    await axil.write_dword(spec.REG["CTRL"].offset, 1)
    src.send_nowait(AxiStreamFrame(data))
    frame = await sink.recv()
    wall = time.perf_counter() - t0
    counter.cancel()
    got = unpack_beats(bytes(frame.tdata), CFG.out_lanes, CFG.acc_w, CFG.out_axis_bits)
    assert np.array_equal(got, expect), "cocotb benchmark job gave wrong results"
    with open(os.environ["IG_BENCH_OUT"], "w") as f:
        json.dump({"cycles": cycles, "wall": wall, "B": B}, f)
