"""The single source of truth of the intergrad hardware.

Array size and data widths (defaults), modes, job flags, error causes, the AXI-Lite
register map and the performance-counter list live here and nowhere else.  From this
module are generated:

* ``hls_verilog/intergrad_regs.vh``  (Verilog localparams included by the RTL top),
* ``docs/registers.md``              (register map, stream formats, counter definitions),

by ``python -m intergrad.spec --write`` (a test fails when either is stale).  The job
contract built on these facts (modes' semantics, MAX_BATCH, stream packing, counter
formulas, register writes) is :mod:`intergrad.core`; the driver, the planner, the analytical
model and the golden model take their constants from here or through it.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

# --------------------------------------------------------------------------- build config

#: Default build configuration (RTL parameter defaults are generated from this).
DEFAULT_ROWS = 8
DEFAULT_COLS = 8
DEFAULT_DATA_W = 16
DEFAULT_ACC_W = 32
DEFAULT_DUAL_MAC = 1

ID_MAGIC = 0x49475244  # "IGRD"
VERSION = 0x00030000   # major.minor.patch as 8.8.16 bits: 0.3.0 (job queues, in-band headers)


@dataclasses.dataclass(frozen=True)
class ArrayConfig:
    """One build of the array. ``dual_mac``: InterGrad PE has two multipliers (1) or
    time-shares one (0, InterGrad then takes two cycles per array step)."""

    rows: int = DEFAULT_ROWS
    cols: int = DEFAULT_COLS
    data_w: int = DEFAULT_DATA_W
    acc_w: int = DEFAULT_ACC_W
    dual_mac: int = DEFAULT_DUAL_MAC

    def __post_init__(self):
        if not (1 <= self.rows <= 64 and 1 <= self.cols <= 64):
            raise ValueError(f"array size {self.rows}x{self.cols} out of range 1..64")
        if not (2 <= self.data_w <= 24):
            raise ValueError(f"DATA_W={self.data_w} out of range 2..24")
        if not (2 * self.data_w <= self.acc_w <= 62):
            raise ValueError(f"ACC_W={self.acc_w} must be in 2*DATA_W..62")
        if self.dual_mac not in (0, 1):
            raise ValueError("dual_mac must be 0 or 1")

    # stream geometry ---------------------------------------------------------------
    @property
    def in_lanes(self) -> int:
        """Input beat = ROWS 'left' lanes then COLS 'top' lanes, DATA_W bits each."""
        return self.rows + self.cols

    @property
    def out_lanes(self) -> int:
        """Output beat = max(ROWS, COLS) lanes of ACC_W bits."""
        return max(self.rows, self.cols)

    @property
    def in_bits(self) -> int:
        return self.in_lanes * self.data_w

    @property
    def out_bits(self) -> int:
        return self.out_lanes * self.acc_w

    @property
    def in_axis_bits(self) -> int:
        """s_axis_tdata width: in_bits rounded up to whole bytes."""
        return _round8(self.in_bits)

    @property
    def out_axis_bits(self) -> int:
        return _round8(self.out_bits)

    @property
    def supports_queue(self) -> bool:
        """A queue's header beat (HEADER_BITS) fits in one input beat of this build."""
        return self.in_axis_bits >= HEADER_BITS

    @property
    def flush_steps(self) -> int:
        """Array steps after the last data beat until the last result is out (F)."""
        return self.rows + self.cols

    def params(self) -> dict[str, int]:
        """Verilog parameter overrides for this build."""
        return {"ROWS": self.rows, "COLS": self.cols, "DATA_W": self.data_w,
                "ACC_W": self.acc_w, "DUAL_MAC": self.dual_mac}

    @classmethod
    def parse(cls, text: str, **kw) -> "ArrayConfig":
        """'8x8' -> ArrayConfig(rows=8, cols=8)."""
        r, c = parse_size(text)
        return cls(rows=r, cols=c, **kw)


def parse_size(text: str) -> tuple[int, int]:
    """'RxC' -> (R, C), no range check (the model's arrays may exceed the RTL's)."""
    try:
        r, c = (int(v) for v in text.strip().lower().split("x"))
    except ValueError:
        raise ValueError(f"array size must look like RxC (e.g. 8x8), got {text!r}") from None
    return r, c


def _round8(bits: int) -> int:
    return (bits + 7) // 8 * 8


# --------------------------------------------------------------------------- modes, flags

MODES = {
    "WS": 0,   # weight stationary: out[t][i] = sum_j S[i][j] * v[t][j]
    "OS": 1,   # output stationary: acc[i][j] += a[t][i] * b[t][j]
    "IG": 2,   # InterGrad: WS (psum out) and OS (acc) at once on one dY stream
}

FLAGS = {
    # name: (bit, description)
    "LOAD_W": (0, "stream starts with weight beats; they are made active before the data"),
    "PRELOAD": (1, "stream ends with the next tile's weight beats, written to the shadow bank "
                   "while this job flushes/drains"),
    "SWAP": (2, "at start, make the preloaded shadow bank active (needs an earlier PRELOAD)"),
    "TRANSPOSE": (3, "weight beats carry columns of S in the left lanes (else rows of S in the "
                     "top lanes)"),
    "ACC_CLEAR": (4, "zero the accumulators at start (else keep accumulating)"),
    "DRAIN": (5, "after the data, stream out rows 0..ROWS_ACT-1 of the accumulators"),
    "SAVE": (6, "after the data, copy the accumulators to the drain buffer in one cycle instead "
                "of draining them: a later job streams them out with DRAIN_PREV"),
    "DRAIN_PREV": (7, "stream out the drain buffer (the saved job's ROWS_ACT rows) first, while "
                      "this job loads and fills the array: the previous tile's drain costs no "
                      "array steps"),
}

ERRORS = {
    # name: (code, description)
    "NONE": (0, "no error"),
    "BAD_MODE": (1, "MODE register holds an unknown mode"),
    "START_BUSY": (2, "START written while a job was running (ignored; the job goes on)"),
    "EARLY_TLAST": (3, "tlast on an input beat before the job's last beat (job aborted)"),
    "MISSING_TLAST": (4, "the job's last input beat had no tlast (job aborted, input "
                         "discarded up to the next tlast)"),
    "BAD_SHAPE": (5, "BATCH is 0, or ROWS_ACT/COLS_ACT is 0 or larger than the array"),
    "NO_PRELOAD": (6, "SWAP with no preloaded weights pending"),
    "BAD_FLAGS": (7, "LOAD_W together with SWAP, or SAVE together with DRAIN"),
    "NO_SAVED": (8, "DRAIN_PREV with no saved accumulators pending"),
    "SOFT_RESET": (9, "the job was aborted by CTRL.SOFT_RESET; this code is carried by the abort "
                      "beat only (the soft reset clears STATUS, so ERR_CAUSE does not show it)"),
    "BAD_HEADER": (10, "queue: a header beat without the header TAG, or a LAST job with no output "
                       "beats, or CTRL.QUEUE on a build whose input beat is narrower than a header "
                       "(QUEUE.JOB names the job)"),
}

#: Errors found when START is written (the job is rejected: its frame is the abort beat alone).
START_ERRORS = ("BAD_MODE", "BAD_SHAPE", "BAD_FLAGS", "NO_PRELOAD", "NO_SAVED")
#: Errors that abort a running job (its frame ends with the abort beat).
ABORT_ERRORS = ("EARLY_TLAST", "MISSING_TLAST", "SOFT_RESET")
#: Errors of a queue's header beat (the job is rejected, the queue ends: the output frame ends
#: with the abort beat, the input is discarded up to its TLAST).
HEADER_ERRORS = START_ERRORS + ("BAD_HEADER",)

#: Abort beat: the one beat that ends the output frame of an aborted or rejected job.
#: TLAST = 1, TDATA[ABORT_CAUSE_LSB +: ABORT_CAUSE_W] = the error code, every other bit 0.
ABORT_CAUSE_LSB = 0
ABORT_CAUSE_W = 8

# --------------------------------------------------------------------------- registers

@dataclasses.dataclass(frozen=True)
class Reg:
    name: str
    offset: int
    access: str  # RO, RW, WO
    doc: str
    fields: tuple = ()  # (name, lsb, width, doc)


#: width of the BATCH register field: the longest job stream is 2**BATCH_W - 1 data beats
BATCH_W = 16

REGISTERS = (
    Reg("ID", 0x00, "RO", f"magic 0x{ID_MAGIC:08X} ('IGRD')"),
    Reg("VERSION", 0x04, "RO", "design version, 8.8.16 bits major.minor.patch"),
    Reg("CFG_ARRAY", 0x08, "RO", "build configuration: array",
        (("ROWS", 0, 8, "PE rows"), ("COLS", 8, 8, "PE columns"),
         ("DUAL_MAC", 16, 1, "InterGrad PE has two multipliers"))),
    Reg("CFG_WIDTH", 0x0C, "RO", "build configuration: widths",
        (("DATA_W", 0, 8, "input element width"), ("ACC_W", 8, 8, "accumulator/output width"))),
    Reg("CTRL", 0x10, "WO", "control strobes (write 1; read as 0)",
        (("START", 0, 1, "start the job described by MODE/BATCH/SHAPE"),
         ("SOFT_RESET", 1, 1, "abort any job (its frame ends with an abort beat, cause "
                              "SOFT_RESET), clear the pipeline, status, pending preload and "
                              "saved accumulators; a pending output beat is still delivered"),
         ("CNT_RESET", 2, 1, "zero all performance counters"),
         ("CNT_SNAPSHOT", 3, 1, "copy all counters to the readable snapshot registers"),
         ("QUEUE", 4, 1, "start a queue: the jobs are described by header beats on the input "
                         "stream (see Job queues), not by MODE/BATCH/SHAPE"))),
    Reg("STATUS", 0x14, "RO", "job status",
        (("BUSY", 0, 1, "COMPUTING or OUT_PENDING (also in the cycle a START or SOFT_RESET "
                        "write is being taken): the host waits for BUSY = 0"),
         ("DONE", 1, 1, "the last job completed without error AND its whole output frame was "
                        "accepted (cleared by START and SOFT_RESET; never 1 while BUSY)"),
         ("ERROR", 2, 1, "an error occurred (cleared by START without error or SOFT_RESET)"),
         ("PRELOADED", 3, 1, "preloaded weights are pending in the shadow bank"),
         ("SAVED", 4, 1, "saved accumulators are pending in the drain buffer"),
         ("COMPUTING", 5, 1, "the job sequencer is working: a job runs, or the input is being "
                             "discarded up to TLAST after MISSING_TLAST"),
         ("OUT_PENDING", 6, 1, "an output beat (or the abort beat) is not yet accepted on "
                               "m_axis"),
         ("ERR_CAUSE", 8, 8, "error code, see the error table"))),
    Reg("MODE", 0x18, "RW", "job mode and flags",
        (("MODE", 0, 2, ", ".join(f"{code} {name}" for name, code in MODES.items())),
         ("FLAGS", 8, 8, "flag bits, see the flag table"))),
    Reg("BATCH", 0x1C, "RW", f"data beats in the job (stream length B), 1..{(1 << BATCH_W) - 1}",
        (("BATCH", 0, BATCH_W, "B"),)),
    Reg("SHAPE", 0x20, "RW", "active tile size; PEs outside are idle, their outputs 0",
        (("ROWS_ACT", 0, 8, "active rows 1..ROWS"), ("COLS_ACT", 16, 8, "active cols 1..COLS"))),
    Reg("QUEUE", 0x24, "RO", "job queue progress (cleared by CTRL.QUEUE, kept by SOFT_RESET)",
        (("JOB", 0, 16, "jobs of the last queue completed so far; after an error, the index "
                        "(from 0) of the queue job that failed"),)),
)

#: Performance counters: 64-bit each, at COUNTER_BASE + 8*index (low word, then high word).
#: Read values are the snapshot taken by CTRL.CNT_SNAPSHOT.
COUNTER_BASE = 0x40
COUNTERS = (
    ("cycles", "every clock cycle since the last CNT_RESET"),
    ("busy_cycles", "cycles in which the sequencer steps an accepted job (from START to its "
                    "last array step, or to the beat that aborts it); not counted: the wait "
                    "for the last output beat after the last step, the discard after "
                    "MISSING_TLAST, a pending abort beat"),
    ("steps", "array steps: cycles in which the wavefront advanced one position"),
    ("macs", "multiply-accumulates performed by active PEs on valid data"),
    ("in_beats", "input beats taken by jobs (weights and data, the beat that aborts a job "
                 "included); beats discarded after MISSING_TLAST are not counted"),
    ("wload_beats", "input beats that carried weights (LOAD_W and PRELOAD)"),
    ("out_beats", "output stream beats accepted, abort beats included"),
    ("stall_in", "busy cycles waiting for an input beat (s_axis_tvalid low)"),
    ("stall_out", "busy cycles waiting for the output (m_axis_tready low); counted first "
                  "when both are missing"),
    ("jobs", "jobs completed without error"),
)
#: Counters are updated up to COUNTER_LAG cycles after the event they count (their increments
#: are registered for timing); a snapshot written after STATUS has read COMPUTING = 0 (and
#: OUT_PENDING = 0 for out_beats) holds the exact values: reading STATUS, then writing CTRL,
#: takes more cycles than the lag.
COUNTER_LAG = 3
REG = {r.name: r for r in REGISTERS}
ADDR_W = 8  # AXI-Lite address width (bytes)

assert COUNTER_BASE + 8 * len(COUNTERS) <= (1 << ADDR_W)


# --------------------------------------------------------------------------- job queues

#: Header beat of a queued job: the first input beat of every job of a queue (CTRL.QUEUE),
#: in TDATA's low HEADER_BITS bits (the rest 0); (name, lsb, width, doc).
HEADER_TAG = 0xA5
HEADER_FIELDS = (
    ("TAG", 0, 8, f"0x{HEADER_TAG:02X}: marks a header (anything else: BAD_HEADER)"),
    ("MODE", 8, 2, "0 WS, 1 OS, 2 IG (as MODE.MODE)"),
    ("LAST", 15, 1, "last job of the queue: its last input beat carries TLAST, its last output "
                    "beat ends the output frame with TLAST"),
    ("FLAGS", 16, 8, "flag bits (as MODE.FLAGS)"),
    ("ROWS_ACT", 24, 8, "active rows 1..ROWS (as SHAPE.ROWS_ACT)"),
    ("COLS_ACT", 32, 8, "active cols 1..COLS (as SHAPE.COLS_ACT)"),
    ("BATCH", 40, 16, "data beats B, 1..65535 (as BATCH)"),
)
HEADER_BITS = 56


def header_field(name: str) -> tuple[int, int]:
    """(lsb, width) of a header-beat field."""
    for f in HEADER_FIELDS:
        if f[0] == name:
            return f[1], f[2]
    raise KeyError(f"header field {name}")


assert max(lsb + w for _, lsb, w, _ in HEADER_FIELDS) <= HEADER_BITS


def field(reg: str, name: str) -> tuple[int, int]:
    """(lsb, width) of a register field."""
    for f in REG[reg].fields:
        if f[0] == name:
            return f[1], f[2]
    raise KeyError(f"{reg}.{name}")


def pack_fields(reg: str, **values: int) -> int:
    word = 0
    for name, val in values.items():
        lsb, width = field(reg, name)
        if not 0 <= val < (1 << width):
            raise ValueError(f"{reg}.{name}={val} does not fit in {width} bits")
        word |= val << lsb
    return word


def unpack_field(reg: str, name: str, word: int) -> int:
    lsb, width = field(reg, name)
    return (word >> lsb) & ((1 << width) - 1)


def flags_word(*names: str) -> int:
    w = 0
    for n in names:
        if n not in FLAGS:
            raise ValueError(f"unknown flag {n!r}; known: {', '.join(FLAGS)}")
        w |= 1 << FLAGS[n][0]
    return w


def config_from_registers(cfg_array: int, cfg_width: int) -> ArrayConfig:
    """The build configuration a core reports in its CFG_ARRAY and CFG_WIDTH registers."""
    return ArrayConfig(rows=unpack_field("CFG_ARRAY", "ROWS", cfg_array),
                       cols=unpack_field("CFG_ARRAY", "COLS", cfg_array),
                       data_w=unpack_field("CFG_WIDTH", "DATA_W", cfg_width),
                       acc_w=unpack_field("CFG_WIDTH", "ACC_W", cfg_width),
                       dual_mac=unpack_field("CFG_ARRAY", "DUAL_MAC", cfg_array))


def abort_beat(cfg: ArrayConfig, cause: str | int) -> bytes:
    """The bytes of the abort beat of ``cause`` (name or code) on ``cfg``'s output stream."""
    code = ERRORS[cause][0] if isinstance(cause, str) else int(cause)
    return (code << ABORT_CAUSE_LSB).to_bytes(cfg.out_axis_bits // 8, "little")


def abort_cause(beat: bytes) -> int | None:
    """The cause code if ``beat`` (one output beat's bytes) has the form of an abort beat,
    else None.  A data beat can have this form too: the host knows a frame was aborted from
    STATUS (ERROR, or the soft reset it issued) or from a frame shorter than expected."""
    v = int.from_bytes(beat, "little")
    mask = ((1 << ABORT_CAUSE_W) - 1) << ABORT_CAUSE_LSB
    if v & ~mask:
        return None
    code = v >> ABORT_CAUSE_LSB
    return code if code != 0 else None


def error_name(code: int) -> str:
    for name, (c, _) in ERRORS.items():
        if c == code:
            return name
    return f"UNKNOWN({code})"


# --------------------------------------------------------------------------- generators

def verilog_header() -> str:
    lines = [
        "// Generated by `python -m intergrad.spec --write` from host/intergrad/spec.py.",
        "// Do not edit: edit spec.py and regenerate (tests check this file is current).",
        "",
        "/* verilator lint_off UNUSEDPARAM */",
        f"localparam [31:0] IG_ID_MAGIC = 32'h{ID_MAGIC:08X};",
        f"localparam [31:0] IG_VERSION = 32'h{VERSION:08X};",
        f"localparam integer IG_ADDR_W = {ADDR_W};",
    ]
    for r in REGISTERS:
        lines.append(f"localparam [{ADDR_W - 1}:0] IG_REG_{r.name} = {ADDR_W}'h{r.offset:02X};")
        for fname, lsb, width, _ in r.fields:
            lines.append(f"localparam integer IG_{r.name}_{fname}_LSB = {lsb};")
            lines.append(f"localparam integer IG_{r.name}_{fname}_W = {width};")
    for name, code in MODES.items():
        lines.append(f"localparam [1:0] IG_MODE_{name} = 2'd{code};")
    for name, (bit, _) in FLAGS.items():
        lines.append(f"localparam integer IG_FLAG_{name} = {bit};")
    for name, (code, _) in ERRORS.items():
        lines.append(f"localparam [7:0] IG_ERR_{name} = 8'd{code};")
    lines.append(f"localparam [7:0] IG_HDR_TAG = 8'h{HEADER_TAG:02X};")
    lines.append(f"localparam integer IG_HDR_BITS = {HEADER_BITS};")
    for fname, lsb, width, _ in HEADER_FIELDS:
        lines.append(f"localparam integer IG_HDR_{fname}_LSB = {lsb};")
        lines.append(f"localparam integer IG_HDR_{fname}_W = {width};")
    lines.append(f"localparam integer IG_ABORT_CAUSE_LSB = {ABORT_CAUSE_LSB};")
    lines.append(f"localparam integer IG_ABORT_CAUSE_W = {ABORT_CAUSE_W};")
    lines.append(f"localparam [{ADDR_W - 1}:0] IG_COUNTER_BASE = {ADDR_W}'h{COUNTER_BASE:02X};")
    lines.append(f"localparam integer IG_NUM_COUNTERS = {len(COUNTERS)};")
    for i, (name, _) in enumerate(COUNTERS):
        lines.append(f"localparam integer IG_CNT_{name.upper()} = {i};")
    lines.append("/* verilator lint_on UNUSEDPARAM */")
    return "\n".join(lines) + "\n"


def registers_markdown() -> str:
    cfg = ArrayConfig()
    out = [
        "# intergrad hardware interface",
        "",
        "Generated by `python -m intergrad.spec --write` from `host/intergrad/spec.py`, the single",
        "source of truth (a test fails when this file is stale). All registers are 32 bits on an",
        f"AXI4-Lite slave with {ADDR_W} address bits.",
        "",
        "## Registers",
        "",
        "| offset | name | access | description |",
        "|---|---|---|---|",
    ]
    for r in REGISTERS:
        out.append(f"| 0x{r.offset:02X} | {r.name} | {r.access} | {r.doc} |")
    out += ["", "### Fields", "", "| register | field | bits | description |", "|---|---|---|---|"]
    for r in REGISTERS:
        for fname, lsb, width, doc in r.fields:
            bits = f"{lsb}" if width == 1 else f"{lsb + width - 1}:{lsb}"
            out.append(f"| {r.name} | {fname} | {bits} | {doc} |")
    out += ["", "## Modes", "", "| code | mode |", "|---|---|"]
    for name, code in MODES.items():
        out.append(f"| {code} | {name} |")
    out += ["", "## Flags (MODE.FLAGS)", "", "| bit | flag | meaning |", "|---|---|---|"]
    for name, (bit, doc) in FLAGS.items():
        out.append(f"| {bit} | {name} | {doc} |")
    out += ["", "## Error causes (STATUS.ERR_CAUSE)", "", "| code | name | meaning |",
            "|---|---|---|"]
    for name, (code, doc) in ERRORS.items():
        out.append(f"| {code} | {name} | {doc} |")
    out += ["", "## Performance counters", "",
            f"64 bits each, low word at `0x{COUNTER_BASE:02X} + 8*index`, high word 4 bytes above.",
            "Reads return the values copied by `CTRL.CNT_SNAPSHOT` (all counters at one instant);",
            "a read whose address is accepted in the cycle after the CNT_SNAPSHOT write's",
            "handshake (or later) returns the new snapshot. Counters are updated up to",
            f"{COUNTER_LAG} cycles after the event they count (registered increments); once",
            "STATUS has read COMPUTING = 0 (and OUT_PENDING = 0 for out_beats), a snapshot",
            "holds the exact values.",
            "", "| index | offset | counter | definition |", "|---|---|---|---|"]
    for i, (name, doc) in enumerate(COUNTERS):
        out.append(f"| {i} | 0x{COUNTER_BASE + 8 * i:02X} | {name} | {doc} |")
    out += ["", "## Stream formats", "",
            f"Input beat (`s_axis_tdata`, {cfg.in_axis_bits} bits in the default "
            f"{cfg.rows}x{cfg.cols} build): lanes of DATA_W bits, lane 0 in the low bits;",
            "lanes `0..ROWS-1` are the **left** field (enter row n, flow right), lanes",
            "`ROWS..ROWS+COLS-1` the **top** field (enter column m, flow down). Output beat",
            f"(`m_axis_tdata`, {cfg.out_axis_bits} bits by default): max(ROWS, COLS) lanes of ACC_W bits.",
            "`tlast` marks the last beat of a job on both streams. Lanes beyond the active",
            "shape are ignored on input and 0 on output.",
            "",
            "| mode | input stream (in order) | output stream |",
            "|---|---|---|",
            "| WS | [weights] B beats: top = v[t] | [saved drain] B beats: lane n = out[t][n] = sum_m S[n][m] v[t][m] |",
            "| OS | [weights] B beats: left = a[t], top = b[t] | [saved drain] [drain] |",
            "| IG | [weights] B beats: left = X[t], top = dY[t] | [saved drain] B beats: dX[t] (lane n), then [drain] |",
            "",
            "* weights (flag LOAD_W, before the data; flag PRELOAD, after the data, for the next job):",
            "  ROWS_ACT beats, beat n: top lanes = S[n][0..COLS_ACT-1]; with TRANSPOSE, COLS_ACT beats,",
            "  beat m: left lanes = S[0..ROWS_ACT-1][m].  A load writes the active tile's weights",
            "  only (rows ROWS_ACT.. and columns COLS_ACT.. of the bank keep their values), either way.",
            "* drain (flag DRAIN): ROWS_ACT beats, beat n: lane m = acc[n][m].",
            "* saved drain (flag DRAIN_PREV): the saved job's ROWS_ACT beats of its accumulators",
            "  (flag SAVE), first on this job's output stream, before its own results.",
            "* Forward `Y = X W` is WS with S = W^T (load W with TRANSPOSE), v = X;",
            "  `dX = dY W^T` is WS with S = W, v = dY; `dW = X^T dY` is OS with a = X, b = dY;",
            "  InterGrad computes both with S = W, X left, dY top, dY streamed once.",
            "",
            "### Frames, aborted jobs, soft reset",
            "",
            "Every START produces exactly one output frame ending with exactly one TLAST beat,",
            "except a job that completes with no output beats (OS without DRAIN and without",
            "DRAIN_PREV), which sends none, and a START while COMPUTING or while an abort beat",
            "is pending (START_BUSY: it starts nothing and has no frame; the running job goes on).",
            "A START is taken while the previous job's last beat still waits in the output",
            "register; the beats stay in order.",
            "",
            "An **aborted** job (" + ", ".join(ABORT_ERRORS) + ") or a **rejected** START",
            "(" + ", ".join(START_ERRORS) + ") ends its frame with one **abort beat**:",
            f"TLAST = 1, TDATA[{ABORT_CAUSE_LSB + ABORT_CAUSE_W - 1}:{ABORT_CAUSE_LSB}] = the error code "
            "(table above), every other bit 0.",
            "The beats the job produced before the error are delivered first, as usual; a",
            "rejected START's frame is the abort beat alone. If the job's frame had already",
            "ended with TLAST before the error (an error during a trailing PRELOAD after the",
            "last output beat), no beat is added. After MISSING_TLAST the input is discarded",
            "up to its next TLAST (COMPUTING stays 1 meanwhile) while the abort beat is sent.",
            "",
            "SOFT_RESET aborts a running job this way (cause SOFT_RESET), clears the pipeline,",
            "the job, error, DONE, PRELOADED and SAVED state (weights and accumulators keep",
            "their values; after any abort the shadow bank is unspecified). It never withdraws",
            "a beat: a pending output beat stays valid, with TDATA/TLAST stable, until accepted,",
            "then the abort beat follows; the core is idle (BUSY = 0) once they are delivered.",
            "Hard `rst` clears everything, TVALID included.",
            "",
            "The host tells an aborted frame from STATUS (ERROR and ERR_CAUSE, or the soft",
            "reset it issued) and discards its last beat; `spec.abort_beat` / `spec.abort_cause`",
            "build and parse the abort beat.",
            "",
            "## Job queues",
            "",
            "`CTRL.QUEUE` starts a **queue**: a pass of many jobs in one input frame and one output",
            "frame, with no AXI-Lite access between jobs. Every job of the queue begins with one",
            f"**header beat** (TDATA bits {HEADER_BITS - 1}:0, all higher bits 0; a build needs an input beat",
            f"of at least {HEADER_BITS} bits: `ArrayConfig.supports_queue`), then the job's input beats",
            "exactly as a programmed job takes them. Only the LAST job's last input beat has TLAST;",
            "the output beats of all jobs follow each other in one frame whose TLAST is on the",
            "LAST job's last output beat (so the LAST job must have output beats). MODE, BATCH and",
            "SHAPE are not used by a queue; PRELOADED/SAVED state carries over from job to job and",
            "from queue to queue as between programmed jobs. `intergrad.descriptor` packs a queue,",
            "`intergrad.golden.queue` is its bit-exact reference.",
            "",
            "| field | bits | meaning |",
            "|---|---|---|"]
    for fname, lsb, width, doc in HEADER_FIELDS:
        bits = f"{lsb}" if width == 1 else f"{lsb + width - 1}:{lsb}"
        out.append(f"| {fname} | {bits} | {doc} |")
    out += ["",
            "A header is checked like a START (" + ", ".join(HEADER_ERRORS) + "). An error in",
            "a queue (a rejected header or an aborted job) ends the queue: the output frame ends",
            "with the abort beat after the beats already produced (those of the earlier jobs",
            "included), the rest of the input frame is discarded up to its TLAST (COMPUTING stays",
            "1 meanwhile), STATUS shows ERROR and ERR_CAUSE and `QUEUE.JOB` the index of the job",
            "that failed. The host recovers as after any error (soft reset, DMA reset, drain).",
            "",
            "Cost: a header beat is one input beat (counted in in_beats) and one busy cycle of",
            "its own (counted in busy_cycles, not in steps; waiting for it counts as stall_in);",
            "one more cycle per job starts it (not counted, like the cycle after a START).",
            "",
            "## Arithmetic",
            "",
            "Inputs are signed two's-complement DATA_W-bit integers. Products are exact",
            "(2*DATA_W bits), sign-extended to ACC_W bits; every sum wraps modulo 2^ACC_W",
            "(two's complement, no saturation). `intergrad.golden` mirrors this bit-exactly.",
            "",
            "## Timing (array steps, no stalls)",
            "",
            "With F = ROWS + COLS, L = weight beats, D = drain beats, P = preload beats:",
            "`steps = L + B + max(F + D, P)`; a DRAIN_PREV drain adds no steps (its beats leave",
            "during the first steps, before any result of the job can). Busy cycles = steps, plus B + F extra cycles in IG",
            "mode when DUAL_MAC = 0 (one multiplier does the psum MAC and the acc MAC in two",
            "cycles), plus the measured stall cycles. MACs = B * ROWS_ACT * COLS_ACT, twice that",
            "in IG mode.",
            ""]
    return "\n".join(out)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


GENERATED = {
    "hls_verilog/intergrad_regs.vh": verilog_header,
    "docs/registers.md": registers_markdown,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the generated files")
    ap.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    a = ap.parse_args(argv)
    stale = []
    for rel, gen in GENERATED.items():
        path = repo_root() / rel
        text = gen()
        if a.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {rel}")
        elif not path.exists() or path.read_text() != text:
            stale.append(rel)
    if stale:
        print("stale: " + ", ".join(stale) + " (run python -m intergrad.spec --write)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
