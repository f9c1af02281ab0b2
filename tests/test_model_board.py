"""The PYNQ-Z2 prediction: the driver's real register accesses per job are within the
board table's figures, and the prediction's parts add up to the model's counts."""
import numpy as np
import pytest

from intergrad import spec
from intergrad.device.base import Device
from intergrad.driver import Accelerator
from intergrad.model import Array
from intergrad.model.board import BOARDS, predict, prediction_text
from intergrad.plan import plan_pass
from intergrad.spec import ArrayConfig
from intergrad.zoo import get


class CountingDevice(Device):
    """No hardware: answers the ID / configuration registers, reads STATUS as idle, returns
    zero output beats, and counts every register access the driver makes."""

    backend = "count"

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        self.reads = self.writes = 0
        self.regs = {spec.REG["ID"].offset: spec.ID_MAGIC,
                     spec.REG["CFG_ARRAY"].offset: spec.pack_fields(
                         "CFG_ARRAY", ROWS=cfg.rows, COLS=cfg.cols, DUAL_MAC=cfg.dual_mac),
                     spec.REG["CFG_WIDTH"].offset: spec.pack_fields(
                         "CFG_WIDTH", DATA_W=cfg.data_w, ACC_W=cfg.acc_w)}

    def read(self, offset):
        self.reads += 1
        return self.regs.get(offset, 0)

    def write(self, offset, value):
        self.writes += 1

    def transfer(self, data, out_beats, timeout=10.0):
        return bytes(out_beats * self.cfg.out_axis_bits // 8)

    def recover(self):
        # the Accelerator recovers once when it opens a device (not per job): nothing to do
        self.recovered = getattr(self, "recovered", 0) + 1

    def close(self):
        pass


def test_driver_register_accesses_per_job_within_board_table():
    v = BOARDS["pynq-z2"].values
    cfg = ArrayConfig(8, 8)
    dev = CountingDevice(cfg)
    acc = Accelerator(dev)
    assert getattr(dev, "recovered", 0) <= 1
    for pass_, (B, N, M) in (("fwd", (20, 19, 13)), ("dx", (20, 19, 13)), ("dw", (20, 19, 13)),
                             ("ig", (70, 30, 9))):
        for tj in plan_pass(cfg, pass_, B, N, M):
            r0, w0 = dev.reads, dev.writes
            acc.run_job(tj.job, np.zeros((tj.job.in_beats(), cfg.in_lanes), dtype=np.int64))
            # the PYNQ backend adds at least one STATUS poll inside its transfer
            assert dev.reads - r0 + 1 <= v["core_reg_reads_per_job"]
            assert 1 <= dev.writes - w0 <= v["core_reg_writes_per_job"]


def test_prediction_parts_add_up():
    b = BOARDS["pynq-z2"]
    assert b.array == (8, 8)
    p = predict(get("lenet5"), b, 16)
    assert [d["dataflow"] for d in p["designs"]] == ["intergrad", "wsos"]
    f = b.values["clock_mhz"] * 1e6
    for d in p["designs"]:
        assert d["seconds"] == pytest.approx(sum(d["parts"].values()))
        assert d["parts"]["array busy"] + d["parts"]["stream/DRAM stalls (HP port)"] == \
            pytest.approx(d["cycles"] / f)
        assert d["gops"] == pytest.approx(2 * d["macs"] / d["seconds"] / 1e9)
        # per pass, array + host time add up to the step minus the host layers
        per = sum(x["array"] + x["host"] for x in d["passes"].values())
        assert per == pytest.approx(d["seconds"] - d["parts"]["host layers + SGD update"])
        # the HP port moves at most 8 bytes per cycle and direction
        assert d["cycles"] * 8 * 2 >= d["stream_bytes"]
    ig, base = p["designs"]
    assert ig["seconds"] < base["seconds"]
    text = prediction_text(p)
    assert "ASSUMPTION" in text and "docs/board.md" in text
