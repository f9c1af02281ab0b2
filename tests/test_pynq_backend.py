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
    # every pass (a forward and an InterGrad pass per shape) is one job queue: one MM2S and
    # one S2MM transfer each
    model = board.dma.mmio.model
    assert model.mm2s.transfers == model.s2mm.transfers == 4
    # buffers were allocated once (grown at most), flushed and invalidated every transfer
    inb, outb = board._inbuf, board._outbuf
    assert isinstance(inb, EmuBuffer) and outb.invalidates >= model.s2mm.transfers
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
    from intergrad.core import Job
    from intergrad.golden import ArrayModel
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


# ------------------------------------------------------------ the AXI DMA register model
def _model(sim, **kw):
    from intergrad.device.axi_dma_model import AxiDmaModel, Memory
    mem = Memory()
    return AxiDmaModel(sim, mem, **kw), mem


def dma_reset(m):
    from intergrad.device import axi_dma_model as A
    m.write(A.MM2S_DMACR, A.CR_RESET)
    for _ in range(100):
        if not m.read(A.MM2S_DMACR) & A.CR_RESET:
            return
    raise AssertionError("reset did not complete")


def test_dma_model_registers_follow_pg021(sim):
    """Reset values, RS/Halted/Idle in direct register mode, LENGTH while halted, R/WC
    interrupt bits, Reset of both channels from either DMACR, self-clearing."""
    from intergrad.device import axi_dma_model as A
    m, mem = _model(sim)
    assert m.read(A.MM2S_DMACR) == 0x00010002 and m.read(A.S2MM_DMACR) == 0x00010002
    assert m.read(A.MM2S_DMASR) == A.SR_HALTED and m.read(A.S2MM_DMASR) == A.SR_HALTED
    buf = np.zeros(4096, np.uint8)
    mem.add(0x1000_0000, buf)
    m.write(A.S2MM_DA, 0x1000_0000)
    m.write(A.S2MM_LENGTH, 1024)           # halted: no effect
    assert not m.s2mm.busy and "no effect" in m.log[-1]
    m.write(A.S2MM_DMACR, A.CR_RS)
    # running, but Idle stays 0 before the first transfer (direct register mode)
    assert m.read(A.S2MM_DMASR) & (A.SR_HALTED | A.SR_IDLE) == 0
    m.write(A.S2MM_LENGTH, 1024)           # posted; the core sends nothing
    m.write(A.S2MM_DMACR, 0)               # RS=0 with a transfer in flight: keeps running
    for _ in range(20):
        assert m.read(A.S2MM_DMASR) & A.SR_HALTED == 0
    assert m.read(A.S2MM_DMACR) & A.CR_RS == 0
    # Reset, written on the MM2S channel, resets both channels and clears itself
    m.write(A.MM2S_DMACR, A.CR_RESET)
    assert m.read(A.S2MM_DMACR) & A.CR_RESET
    for _ in range(10):
        if not m.read(A.MM2S_DMACR) & A.CR_RESET:
            break
    assert m.read(A.MM2S_DMACR) == 0x00010002 and m.read(A.S2MM_DMACR) == 0x00010002
    assert m.read(A.S2MM_DMASR) == A.SR_HALTED and not m.s2mm.busy
    assert not sim.stream_state()["snk_active"]
    m.s2mm.sr |= A.SR_IOC_IRQ | A.SR_ERR_IRQ
    m.write(A.S2MM_DMASR, A.SR_IOC_IRQ)    # write 1 to clear
    assert m.read(A.S2MM_DMASR) & (A.SR_IOC_IRQ | A.SR_ERR_IRQ) == A.SR_ERR_IRQ


def test_dma_model_s2mm_ends_at_tlast_and_overflows_into_an_internal_error(sim):
    """S2MM completes at TLAST with LENGTH = the bytes received; a frame larger than the
    buffer sets DMAIntErr and halts the channel; an unmapped address a decode error."""
    from intergrad.device import axi_dma_model as A
    from intergrad.core import Job, pack_beats
    from intergrad.golden import ArrayModel
    from intergrad.device.base import status_bit
    acc = Accelerator(sim)
    cfg = sim.cfg
    ob = cfg.out_axis_bits // 8
    m, mem = _model(sim)
    job = Job("WS", 5, cfg.rows, cfg.cols, {"LOAD_W"})
    lanes = ArrayModel(cfg).job_input(job, weights=np.eye(cfg.rows, cfg.cols, dtype=int),
                                      top=np.arange(5 * cfg.cols).reshape(5, cfg.cols))
    src = np.frombuffer(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits), np.uint8).copy()
    ibuf, obuf = np.zeros(8192, np.uint8), np.zeros(8192, np.uint8)
    mem.add(0x2000_0000, ibuf)
    mem.add(0x3000_0000, obuf)
    ibuf[:src.size] = src

    def run(out_bytes):
        acc._shadow.clear()
        acc._wr("MODE", spec.pack_fields("MODE", MODE=0, FLAGS=spec.flags_word("LOAD_W")))
        acc._wr("BATCH", 5)
        acc._wr("SHAPE", spec.pack_fields("SHAPE", ROWS_ACT=cfg.rows, COLS_ACT=cfg.cols))
        sim.write(spec.REG["CTRL"].offset, 1)
        for cr in (A.MM2S_DMACR, A.S2MM_DMACR):
            m.write(cr, A.CR_RS)
        m.write(A.S2MM_DA, 0x3000_0000)
        m.write(A.S2MM_LENGTH, out_bytes)
        m.write(A.MM2S_SA, 0x2000_0000)
        m.write(A.MM2S_LENGTH, src.size)
        for _ in range(200):
            if m.read(A.S2MM_DMASR) & (A.SR_IDLE | A.SR_ERRORS):
                break
    run(4096)  # a larger buffer than the frame: completes at TLAST
    assert m.read(A.S2MM_DMASR) & (A.SR_IDLE | A.SR_IOC_IRQ) == A.SR_IDLE | A.SR_IOC_IRQ
    assert m.read(A.S2MM_LENGTH) == 5 * ob
    assert m.read(A.MM2S_DMASR) & A.SR_IDLE
    got = obuf[:5 * ob]
    assert got.any()
    # the frame does not fit: internal error, channel halted, RS cleared
    dma_reset(m)
    run(2 * ob)
    sr = m.read(A.S2MM_DMASR)
    assert sr & A.SR_INTERR and sr & A.SR_ERR_IRQ and sr & A.SR_HALTED
    assert m.read(A.S2MM_DMACR) & A.CR_RS == 0
    assert np.array_equal(obuf[:2 * ob], got[:2 * ob])  # what it received is in memory
    # (the core still holds a beat: the recovery sequence drains it)
    sim.recover()
    # a decode error
    dma_reset(m)
    m.write(A.MM2S_DMACR, A.CR_RS)
    m.write(A.MM2S_SA, 0x7000_0000)
    m.write(A.MM2S_LENGTH, 64)
    assert m.read(A.MM2S_DMASR) & (A.SR_DECERR | A.SR_HALTED) == A.SR_DECERR | A.SR_HALTED
    dma_reset(m)
    assert status_bit("BUSY") & sim.read(spec.REG["STATUS"].offset) == 0


def test_emulated_pynq_driver_is_pynq_code():
    """The emulated channel's methods are PYNQ's _SDMAChannel statements (checked against
    the copy of pynq/lib/dma.py in the PYNQ repository when a mirror is available)."""
    import inspect
    from pathlib import Path
    from intergrad.device.pynq_emu import EmuSDMAChannel
    src = inspect.getsource(EmuSDMAChannel)
    for stmt in ("self._mmio.write(self._offset, 0x0000)", "while self.running:",
                 'raise RuntimeError("DMA channel not idle")',
                 "self.transferred = self._mmio.read(self._offset + 0x28)",
                 "if not self.idle and not self._first_transfer:"):
        assert stmt in src
    ref = Path("/work/.mirror/Xilinx+PYNQ/repo")
    if not ref.exists():
        pytest.skip("no PYNQ mirror to compare against")
    import subprocess
    text = subprocess.run(["git", "-C", str(ref), "show", "HEAD:pynq/lib/dma.py"],
                          capture_output=True, text=True).stdout
    body = text[text.index("class _SDMAChannel"):text.index("class _SGDMAChannel")]

    def code(s):  # statements only: no comments, docstrings, blank lines
        import ast
        tree = ast.parse(inspect.cleandoc(s) if not s.startswith("class") else s)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.body and isinstance(node.body[0], ast.Expr) and \
                        isinstance(getattr(node.body[0], "value", None), ast.Constant):
                    node.body = node.body[1:] or [ast.Pass()]
        return {n.name: ast.dump(n) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    ours, theirs = code(src), code(body)
    for name in ("__init__", "running", "idle", "error", "start", "stop", "transfer", "wait"):
        assert ours[name] == theirs[name], name


def test_run_pass_is_one_mm2s_and_one_s2mm_per_queue(board, monkeypatch):
    """A pass through the board path: one MM2S and one S2MM transfer per queue, one CTRL
    write per queue, buffers allocated once; cut into several queues at the DMA's length
    limit (the model's length register narrowed to match); bit-exact against the golden
    model."""
    from intergrad.descriptor import split_pass
    from intergrad.golden import ArrayModel
    from intergrad.golden.queue import random_queue, run_queue
    acc = Accelerator(board)
    cfg = acc.cfg
    model = board.dma.mmio.model
    assert board.max_transfer == board.dma.buffer_max_size == (1 << 26) - 1
    rng = np.random.default_rng(6)
    m = ArrayModel(cfg)
    jobs, lanes = random_queue(cfg, rng, 10, 30)
    exp = run_queue(m, jobs, lanes)
    writes = []
    orig = board.write
    monkeypatch.setattr(board, "write", lambda off, v: writes.append(off) or orig(off, v))
    t0, s0 = model.mm2s.transfers, model.s2mm.transfers
    outs = acc.run_pass(jobs, lanes)
    assert model.mm2s.transfers - t0 == 1 and model.s2mm.transfers - s0 == 1
    assert writes == [spec.REG["CTRL"].offset]   # CTRL.QUEUE, nothing else
    for o, e in zip(outs, exp.outputs):
        assert np.array_equal(o, e)
    inb = board._inbuf
    # a narrower length register: the same kind of pass in several queues, same buffers
    bits = 13
    model.length_mask = (1 << bits) - 1
    board.max_transfer = (1 << bits) - 1
    try:
        jobs, lanes = random_queue(cfg, rng, 24, 30, preloaded=m.preloaded,
                                   saved_rows=m.state.saved_rows)
        exp = run_queue(m, jobs, lanes)
        queues, tail = split_pass(cfg, jobs, board.max_transfer)
        assert len(queues) > 1 and tail == len(jobs)
        t0, s0 = model.mm2s.transfers, model.s2mm.transfers
        outs = acc.run_pass(jobs, lanes)
        assert model.mm2s.transfers - t0 == len(queues) == model.s2mm.transfers - s0
        for o, e in zip(outs, exp.outputs):
            assert np.array_equal(o, e)
        assert board._inbuf is inb
    finally:
        model.length_mask = (1 << 26) - 1
        board.max_transfer = (1 << 26) - 1
