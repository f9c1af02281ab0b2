"""The board backend's own logic, run against the simulated hardware through the parts of
the PYNQ API it uses (intergrad.device.pynq_emu): no board here, see docs/board.md."""
from __future__ import annotations

import numpy as np
import pytest

from intergrad import spec
from intergrad.device import DeviceError, DeviceTimeout
from intergrad.device.pynq_backend import PynqDevice, core_driver_class
from intergrad.device.pynq_emu import EmuBuffer, make_pynq_module
from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.scheduler import Scheduler, gemm_reference


@pytest.fixture(scope="module")
def sim():
    d = SimDevice(verbose=False)
    yield d
    d.close()


@pytest.fixture
def board(sim):
    pq = make_pynq_module(sim)
    dev = PynqDevice("intergrad.bit", pynq_module=pq)
    yield dev
    dev.close()


def test_driver_binds_and_reads_the_build(board, sim):
    assert type(board.core).__name__ == "IntergradCore"
    assert board.core.read_reg("ID") == spec.ID_MAGIC
    assert board.core.REGISTERS["STATUS"] == spec.REG["STATUS"].offset
    assert board.cfg == sim.cfg
    acc = Accelerator(board)
    assert acc.describe()["backend"] == "pynq"


def test_gemms_through_the_board_path_are_exact(board):
    s = Scheduler(Accelerator(board))
    rng = np.random.default_rng(4)
    for B, N, M in ((5, 3, 2), (40, 19, 11)):
        X, W, dY = (rng.integers(-300, 300, sh) for sh in ((B, N), (N, M), (B, M)))
        assert np.array_equal(s.fc_forward(X, W), gemm_reference(X, W, 32))
        dX, dW = s.fc_backward(X, W, dY, schedule="intergrad")
        assert np.array_equal(dX, gemm_reference(dY, W.T, 32))
        assert np.array_equal(dW, gemm_reference(X.T, dY, 32))
    # buffers were allocated once (grown at most), flushed and invalidated every transfer
    inb, outb = board._inbuf, board._outbuf
    assert isinstance(inb, EmuBuffer) and inb.flushes > 10 and outb.invalidates > 10
    # PYNQ's send transfer() flushes too (as pynq.lib.dma does): two flushes per transfer
    assert board.dma.mmio.model.mm2s.transfers * 2 == inb.flushes


def test_missing_flush_is_caught(board, monkeypatch):
    """Without the flush, the DMA reads stale memory: results go wrong (the emulation
    models the non-coherent path, so the backend's cache handling is really checked)."""
    s = Scheduler(Accelerator(board))
    rng = np.random.default_rng(1)
    X, W = rng.integers(-50, 50, (8, 8)), rng.integers(-50, 50, (8, 8))
    assert np.array_equal(s.fc_forward(X, W), X @ W)
    monkeypatch.setattr(EmuBuffer, "flush", lambda self: None)
    X2 = rng.integers(-50, 50, (8, 8))
    assert not np.array_equal(s.fc_forward(X2, W), X2 @ W)


def test_dma_timeout_and_error_are_raised_with_status(board):
    acc = Accelerator(board)
    cfg = acc.cfg
    # a job whose output nobody receives (no S2MM transfer posted): the core stalls, a
    # timeout naming the status, and the recovery leaves the device idle
    acc._wr("MODE", spec.pack_fields("MODE", MODE=0), cache=False)
    acc._wr("BATCH", 4, cache=False)
    acc._wr("SHAPE", spec.pack_fields("SHAPE", ROWS_ACT=cfg.rows, COLS_ACT=cfg.cols), cache=False)
    board.write(spec.REG["CTRL"].offset, 1)
    data = bytes(4 * cfg.in_axis_bits // 8)
    with pytest.raises(DeviceTimeout, match=r"(?s)transfer not finished.*BUSY=1"):
        board.transfer(data, 0, timeout=0.3)
    assert board.status()["BUSY"] == 0
    # a length beyond the DMA's length register
    with pytest.raises(ValueError, match="length register"):
        board.transfer(bytes(cfg.in_axis_bits // 8) * 3, (1 << 26) // (cfg.out_axis_bits // 8) + 1)
    # a DMA error bit (a decode error: the model raises it for an unmapped address)
    model = board.dma.mmio.model
    board._inbuf.physical_address += 1 << 30  # the DMA now reads from nowhere
    try:
        with pytest.raises(DeviceError, match="AXI DMA MM2S error"):
            board.transfer(data, 4, timeout=1)
    finally:
        board._inbuf.physical_address -= 1 << 30
    assert any("not mapped" in e for e in model.log)
    out = acc.run_job(*_ws_job(acc))
    assert out.shape[0] == 4


def _ws_job(acc, B=4):
    from intergrad.golden import ArrayModel, Job
    cfg = acc.cfg
    job = Job("WS", B, cfg.rows, cfg.cols, {"LOAD_W"})
    lanes = ArrayModel(cfg).job_input(job, weights=np.ones((cfg.rows, cfg.cols), int),
                                      top=np.ones((B, cfg.cols), int))
    return job, lanes


def test_no_pynq_gives_a_clear_message(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name == "pynq":
            raise ImportError("No module named 'pynq'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(DeviceError, match="backend sim"):
        PynqDevice()


def test_driver_class_is_created_once():
    pq = make_pynq_module(None)
    assert core_driver_class(pq) is core_driver_class(pq)
