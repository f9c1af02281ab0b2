"""throughput_test() (FINN's measured-figures call) on the simulated hardware and on the PYNQ
backend through its emulator: the figures agree with the core's counters and with each
other, the workload's outputs are checked, bad arguments are refused."""
import numpy as np
import pytest

from intergrad import spec
from intergrad.device.pynq_backend import PynqDevice
from intergrad.device.pynq_emu import make_pynq_module
from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.core import Job, jobs_counters
from intergrad.throughput import format_report, main, throughput_test


@pytest.fixture(scope="module")
def sim():
    d = SimDevice(verbose=False)
    yield d
    d.close()


def _consistent(res, cfg, batch, repeats):
    c = res["counters"]
    assert set(c) == {name for name, _ in spec.COUNTERS}
    assert res["images"] == batch * repeats
    assert c["jobs"] == repeats
    # bytes the host sent / received == beats the core counted x beat bytes
    assert res["bytes_in"] == c["in_beats"] * cfg.in_axis_bits // 8
    assert res["bytes_out"] == c["out_beats"] * cfg.out_axis_bits // 8
    # the counters equal the closed-form counts of the jobs run (stalls apart)
    job = Job("WS", batch, cfg.rows, cfg.cols, {"LOAD_W"})
    want = jobs_counters(cfg, [job] * repeats)
    for k in ("steps", "macs", "in_beats", "wload_beats", "out_beats", "jobs"):
        assert c[k] == want[k], k
    assert c["macs"] == res["images"] * cfg.rows * cfg.cols
    assert c["busy_cycles"] == want["busy_cycles"] + c["stall_in"] + c["stall_out"]
    assert c["cycles"] >= c["busy_cycles"]
    # the derived figures are the measured ones divided as stated
    s = res["runtime[ms]"] / 1e3
    assert res["throughput[images/s]"] == pytest.approx(res["images"] / s)
    assert res["DRAM_in_bandwidth[MB/s]"] == pytest.approx(res["bytes_in"] / s / 1e6)
    assert res["DRAM_out_bandwidth[MB/s]"] == pytest.approx(res["bytes_out"] / s / 1e6)
    core_s = c["cycles"] / (res["fclk[mhz]"] * 1e6)
    assert res["core_runtime[ms]"] == pytest.approx(core_s * 1e3)
    assert res["core_throughput[images/s]"] == pytest.approx(res["images"] / core_s)
    assert res["checked"]


def test_sim_figures_match_the_counters(sim):
    accel = Accelerator(sim)
    res = throughput_test(accel, batch=40, repeats=3)
    print(format_report(res))
    _consistent(res, accel.cfg, 40, 3)
    assert res["backend"] == "sim"
    assert res["fclk[mhz]"] == 100.0          # the board's FCLK0 (model/data/board_pynq_z2.json)
    assert res["sim_cycles_per_s"] == pytest.approx(res["counters"]["cycles"]
                                                    / (res["runtime[ms]"] / 1e3))
    assert res["counters"]["stall_in"] == res["counters"]["stall_out"] == 0


def test_stalls_show_in_counters_and_core_throughput(sim):
    accel = Accelerator(sim)
    free = throughput_test(accel, batch=64, repeats=2, fclk_mhz=50)
    assert free["fclk[mhz]"] == 50
    sim.set_stalls(in_idle=0.4, out_busy=0.3, seed=3)
    try:
        slow = throughput_test(accel, batch=64, repeats=2, fclk_mhz=50)
    finally:
        sim.set_stalls()
    _consistent(slow, accel.cfg, 64, 2)
    assert slow["counters"]["stall_in"] > 0 and slow["counters"]["stall_out"] > 0
    assert slow["counters"]["cycles"] > free["counters"]["cycles"]
    assert slow["core_throughput[images/s]"] < free["core_throughput[images/s]"]


def test_pynq_backend_through_its_emulator(sim):
    dev = PynqDevice("intergrad.bit", pynq_module=make_pynq_module(sim))
    try:
        accel = Accelerator(dev)
        res = throughput_test(accel, batch=30, repeats=2)
    finally:
        dev.close()
    _consistent(res, accel.cfg, 30, 2)
    assert res["backend"] == "pynq" and "sim_cycles_per_s" not in res


def test_wrong_outputs_are_not_reported_as_throughput(sim):
    accel = Accelerator(sim)
    real = accel.run_job

    def corrupt(job, lanes, timeout=None):
        out = real(job, lanes, timeout)
        out[3, 0] += 1
        return out

    accel.run_job = corrupt
    with pytest.raises(AssertionError, match="job 0 output beat 3"):
        throughput_test(accel, batch=8, repeats=1)


def test_bad_arguments(sim, capsys):
    accel = Accelerator(sim)
    for kw in ({"batch": 0}, {"repeats": 0}, {"fclk_mhz": 0}):
        with pytest.raises(ValueError):
            throughput_test(accel, **kw)
    for argv in (["--batch", "0"], ["--array", "0x3"], ["--repeats", "-1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_prints_the_figures(capsys):
    assert main(["--backend", "sim", "--batch", "16", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "throughput[images/s]" in out and "counters: cycles=" in out
    assert "32 images" in out and "jobs=2" in out
    assert np.isfinite(float(out.split("DRAM_in_bandwidth[MB/s]")[1].split()[0].replace(",", "")))
