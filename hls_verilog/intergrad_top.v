/*
 * intergrad: configurable WS / OS / InterGrad systolic array core.
 *
 * One AXI4-Stream input (weights and data), one AXI4-Stream output (results and
 * accumulator drain), an AXI4-Lite slave (intergrad_axil_regs) for identification, build
 * configuration, job control, status and 64-bit performance counters.  The register map,
 * codes and the abort-beat layout come from intergrad_regs.vh, generated from
 * host/intergrad/spec.py (docs/registers.md documents them).
 *
 * The array advances in global steps: a step happens when the beat it consumes (if any)
 * is valid and the output register can take the beat it produces (if any); otherwise the
 * whole array holds and the cycle is counted as an input or output stall.  Step counts
 * are therefore fixed by the job, whatever the stream timing.
 *
 * Frames: every job's output frame ends with exactly one TLAST.  An aborted job
 * (EARLY_TLAST, MISSING_TLAST, SOFT_RESET) and a rejected START end their frame with one
 * abort beat (TLAST, TDATA[7:0] = cause, all else 0) after the beats already produced,
 * unless the frame had already ended.  The output register is a plain AXI4-Stream
 * register slice: once TVALID is high it stays high, TDATA/TLAST stable, until TREADY,
 * soft reset included (only the hard rst clears it).
 *
 * Queues (CTRL.QUEUE): every job of a queue starts with a header beat on the input stream
 * (mode, flags, batch, shape; docs/registers.md "Job queues"), taken in S_HDR into header
 * registers (their checks registered beside them, as cfg_err for the register file) and
 * started one cycle later in S_QSTART by the same start logic as a programmed job, whose
 * job fields (mode_reg ... cols_act_reg) select the header registers in that cycle.  Only
 * the LAST job's last input beat carries TLAST and only its last output beat TLAST; an
 * error ends the queue as it ends a job (abort beat, discard up to TLAST), QUEUE.JOB names
 * the job.
 *
 * Sequencing: the job state machine is one-hot; every count that a step condition tests
 * keeps registered "is zero" / "is one" flags beside it, so the step logic (go) depends on
 * a few flag registers only.  The control registers, the output register and the
 * performance counters are written in one `always @(posedge clk)` with non-blocking
 * assignments in priority order (a register holds unless a condition writes it), `if (rst)`
 * last.  The step conditions that only this block reads (take, abort, tail_last, ...) are
 * blocking temporaries at its top; those the array or an output port needs (go, start_ok,
 * s_axis_tready, ...) are wires.  (A simulator evaluates the block's logic once per clock
 * edge, where a wire that reads a stream input is evaluated again whenever an input
 * changes.)  The wide datapath registers (the output beat) are loaded in clocked branches
 * with enables.
 * Performance-counter increments are registered (the counters lag by up to two cycles).
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module intergrad_top #
(
    // PE rows
    parameter ROWS = 8,
    // PE columns
    parameter COLS = 8,
    // signed input element width
    parameter DATA_W = 16,
    // signed accumulator / output width (>= 2*DATA_W)
    parameter ACC_W = 32,
    // InterGrad PE with two multipliers (1) or one time-shared multiplier (0)
    parameter DUAL_MAC = 1
)
(
    input  wire                                         clk,
    input  wire                                         rst,

    // AXI4-Stream input: ROWS left lanes, then COLS top lanes, DATA_W bits each
    input  wire [((ROWS+COLS)*DATA_W+7)/8*8-1:0]        s_axis_tdata,
    input  wire                                         s_axis_tvalid,
    output wire                                         s_axis_tready,
    input  wire                                         s_axis_tlast,

    // AXI4-Stream output: max(ROWS, COLS) lanes of ACC_W bits
    output reg  [((ROWS>COLS?ROWS:COLS)*ACC_W+7)/8*8-1:0] m_axis_tdata,
    output reg                                          m_axis_tvalid,
    input  wire                                         m_axis_tready,
    output reg                                          m_axis_tlast,

    // AXI4-Lite slave
    input  wire [7:0]                                   s_axil_awaddr,
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire [2:0]                                   s_axil_awprot,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire                                         s_axil_awvalid,
    output wire                                         s_axil_awready,
    input  wire [31:0]                                  s_axil_wdata,
    input  wire [3:0]                                   s_axil_wstrb,
    input  wire                                         s_axil_wvalid,
    output wire                                         s_axil_wready,
    output wire [1:0]                                   s_axil_bresp,
    output wire                                         s_axil_bvalid,
    input  wire                                         s_axil_bready,
    input  wire [7:0]                                   s_axil_araddr,
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire [2:0]                                   s_axil_arprot,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire                                         s_axil_arvalid,
    output wire                                         s_axil_arready,
    output wire [31:0]                                  s_axil_rdata,
    output wire [1:0]                                   s_axil_rresp,
    output wire                                         s_axil_rvalid,
    input  wire                                         s_axil_rready
);

`include "intergrad_regs.vh"

localparam OUT_LANES = (ROWS > COLS) ? ROWS : COLS;
localparam OUT_AXIS_W = (OUT_LANES*ACC_W+7)/8*8;
localparam IN_W = (ROWS+COLS)*DATA_W;
localparam FLUSH = ROWS + COLS;
localparam MAC_W = $clog2(2*ROWS*COLS+1);
localparam CNT_W = 64;
localparam NCNT = IG_NUM_COUNTERS;

// ---------------------------------------------------------------- parameter checks
// Simulators report these from the initial block; synthesis tools (Vivado ignores
// $error in initial blocks) fail at elaboration on the instance of a module that does
// not exist, named after the error.
initial begin
    if (ROWS < 1 || ROWS > 64 || COLS < 1 || COLS > 64) begin
        $error("intergrad_top: ROWS and COLS must be in 1..64");
        $finish;
    end
    if (DATA_W < 2 || DATA_W > 24) begin
        $error("intergrad_top: DATA_W must be in 2..24");
        $finish;
    end
    if (ACC_W < 2*DATA_W || ACC_W > 62) begin
        $error("intergrad_top: ACC_W must be in 2*DATA_W..62");
        $finish;
    end
    if (DUAL_MAC != 0 && DUAL_MAC != 1) begin
        $error("intergrad_top: DUAL_MAC must be 0 or 1");
        $finish;
    end
end

generate
    if (ROWS < 1 || ROWS > 64 || COLS < 1 || COLS > 64) begin : g_check_size
        intergrad_top_PARAMETER_ERROR_ROWS_COLS_must_be_1_to_64 u_error ();
    end
    if (DATA_W < 2 || DATA_W > 24) begin : g_check_data_w
        intergrad_top_PARAMETER_ERROR_DATA_W_must_be_2_to_24 u_error ();
    end
    if (ACC_W < 2*DATA_W || ACC_W > 62) begin : g_check_acc_w
        intergrad_top_PARAMETER_ERROR_ACC_W_must_be_2xDATA_W_to_62 u_error ();
    end
    if (DUAL_MAC != 0 && DUAL_MAC != 1) begin : g_check_dual_mac
        intergrad_top_PARAMETER_ERROR_DUAL_MAC_must_be_0_or_1 u_error ();
    end
endgenerate

// ---------------------------------------------------------------- register file
// the register file's job fields (a programmed job); mode_reg ... cols_act_reg below are the
// fields of the job being started (the header's in a queue)
wire [1:0]  mode_prog;
wire [7:0]  flags_prog;
wire [15:0] batch_prog;
wire [7:0]  rows_act_prog;
wire [7:0]  cols_act_prog;
wire        fields_upd;
wire        ctrl_start;
wire        ctrl_queue;
reg  [15:0] q_job;          // QUEUE.JOB: jobs of the queue completed
wire        ctrl_soft_reset;
wire        ctrl_cnt_reset;
wire        ctrl_cnt_snapshot;

wire        st_busy;
wire        st_done;
wire        st_computing;
wire        st_out_pending;

// the counter snapshot, counter i in bits [CNT_W*i +: CNT_W] (one flat register)
reg  [NCNT*CNT_W-1:0] snap_flat;

// job state, declared here for the status inputs
reg        err_flag;
reg [7:0]  err_cause;
reg        preloaded;
reg        saved;

intergrad_axil_regs #(
    .ROWS(ROWS), .COLS(COLS), .DATA_W(DATA_W), .ACC_W(ACC_W), .DUAL_MAC(DUAL_MAC),
    .NCNT(NCNT)
) u_regs (
    .clk(clk), .rst(rst),
    .s_axil_awaddr(s_axil_awaddr), .s_axil_awvalid(s_axil_awvalid),
    .s_axil_awready(s_axil_awready),
    .s_axil_wdata(s_axil_wdata), .s_axil_wstrb(s_axil_wstrb), .s_axil_wvalid(s_axil_wvalid),
    .s_axil_wready(s_axil_wready),
    .s_axil_bresp(s_axil_bresp), .s_axil_bvalid(s_axil_bvalid), .s_axil_bready(s_axil_bready),
    .s_axil_araddr(s_axil_araddr), .s_axil_arvalid(s_axil_arvalid),
    .s_axil_arready(s_axil_arready),
    .s_axil_rdata(s_axil_rdata), .s_axil_rresp(s_axil_rresp), .s_axil_rvalid(s_axil_rvalid),
    .s_axil_rready(s_axil_rready),
    .mode(mode_prog), .flags(flags_prog), .batch(batch_prog),
    .rows_act(rows_act_prog), .cols_act(cols_act_prog),
    .fields_upd(fields_upd),
    .ctrl_start(ctrl_start), .ctrl_queue(ctrl_queue), .ctrl_soft_reset(ctrl_soft_reset),
    .ctrl_cnt_reset(ctrl_cnt_reset), .ctrl_cnt_snapshot(ctrl_cnt_snapshot),
    .st_busy(st_busy), .st_done(st_done), .st_error(err_flag),
    .st_preloaded(preloaded), .st_saved(saved),
    .st_computing(st_computing), .st_out_pending(st_out_pending),
    .st_err_cause(err_cause), .st_queue_job(q_job),
    .snap_flat(snap_flat)
);

// ---------------------------------------------------------------- job state machine
// one-hot state; S_HDR takes a queue job's header beat, S_QSTART starts the job
localparam S_IDLE = 0, S_LOAD = 1, S_STREAM = 2, S_TAIL = 3, S_DISCARD = 4, S_HDR = 5,
           S_QSTART = 6;
localparam [6:0] ST_IDLE = 7'b0000001, ST_LOAD = 7'b0000010, ST_STREAM = 7'b0000100,
                 ST_TAIL = 7'b0001000, ST_DISCARD = 7'b0010000, ST_HDR = 7'b0100000,
                 ST_QSTART = 7'b1000000;
// queues need the header in one input beat
localparam QUEUE_OK = ((ROWS+COLS)*DATA_W+7)/8*8 >= IG_HDR_BITS ? 1 : 0;

reg [6:0]  state;

// START / QUEUE / SOFT_RESET strobes, one cycle after the CTRL write (start_req: START or
// QUEUE, q_req: QUEUE)
reg        start_req;
reg        q_req;
reg        soft_req;
// the header beat of the next queue job (taken in S_HDR) and its checks, registered
reg [1:0]  hdr_mode;
reg [15:0] hdr_batch;
reg [7:0]  hdr_flags, hdr_rows, hdr_cols;
reg        hdr_last;
reg [7:0]  hdr_err, hdr_err_next;
reg        hdr_bad;        // hdr_err != NONE, registered with it
reg        hdr_early;      // hdr_err == EARLY_TLAST (a queue job's only cause with it)
// configuration errors of the programmed job (MODE/BATCH/SHAPE/FLAGS), registered: the
// register file changes only by writes, two or more cycles before a START strobe
reg [7:0]  cfg_err, cfg_err_next;
reg        cfg_bad;        // cfg_err != NONE, registered with it (no compare at START)

// running job (loaded at START)
reg        job_last;      // its last beats end the frames (a programmed job, a LAST queue job)
reg        job_q;         // a queue job
reg        job_ws, job_os, job_ig;
reg [7:0]  job_flags;
reg [7:0]  job_rows;
reg [7:0]  job_wlen;      // weight beats of a LOAD_W / PRELOAD (rows, or cols if TRANSPOSE)
reg [COLS-1:0] job_colmask;  // active columns
reg [COLS-1:0] sh_colmask;   // active columns of the saved tile
reg [7:0]  sh_rows;          // rows of the saved tile

// counts with their registered flags
reg [7:0]  ld_cnt;                       // weight beats left in LOAD
reg        ld_one;
reg [7:0]  ld_idx;                       // weight beat index (LOAD and preload)
reg [15:0] b_cnt;                        // data beats left in STREAM
reg        b_one;
reg [15:0] dout_cnt;                     // data output beats left
reg        dout_one;
reg [7:0]  flush_cnt;                    // flush steps left in TAIL
reg        flush_nz;
reg        flush_one;
reg [7:0]  drain_cnt;                    // drain beats left in TAIL
reg        drain_nz;
reg        drain_one;
reg [7:0]  drain_idx;
reg [7:0]  pre_cnt;                      // preload beats left in TAIL
reg        pre_nz;
reg        pre_one;
reg [7:0]  pd_cnt;                       // saved-drain beats left (DRAIN_PREV)
reg        pd_nz;
reg        pd_one;
reg [7:0]  pd_idx;

reg        sub;                          // DUAL_MAC=0, IG: accumulate cycle done this step
reg        wsel;                         // active weight bank
reg        w_upd;                        // the PEs load their psum weight operand (below)
reg        done_flag;
reg [FLUSH-1:0] ovalid_sr;                  // data-output valid per flush position
reg        frame_done;                   // the job's TLAST beat has been loaded
reg        term_pend;                    // abort beat waiting for the output register
reg [7:0]  term_code;
reg        pipe_clear;                   // clear the array's data links (after an abort)

wire st_idle = state[S_IDLE];
wire st_load = state[S_LOAD];
wire st_stream = state[S_STREAM];
wire st_tail = state[S_TAIL];
wire st_discard = state[S_DISCARD];
wire st_hdr = state[S_HDR];
wire st_qstart = state[S_QSTART];

// the job being started: the header's fields in S_QSTART, else the register file's
wire [1:0]  mode_reg = st_qstart ? hdr_mode : mode_prog;
wire [7:0]  flags_reg = st_qstart ? hdr_flags : flags_prog;
wire [15:0] batch_reg = st_qstart ? hdr_batch : batch_prog;
wire [7:0]  rows_act_reg = st_qstart ? hdr_rows : rows_act_prog;
wire [7:0]  cols_act_reg = st_qstart ? hdr_cols : cols_act_prog;

wire f_transpose = job_flags[IG_FLAG_TRANSPOSE];
wire f_drain = job_flags[IG_FLAG_DRAIN];
wire f_preload = job_flags[IG_FLAG_PRELOAD];
wire f_save = job_flags[IG_FLAG_SAVE];

// step logic: a function of the state, the flag registers and the stream handshakes
wire in_flush = st_stream || (st_tail && flush_nz);
wire slow = (DUAL_MAC == 0) && job_ig && in_flush;
wire stepping = st_load || st_stream || st_tail;
wire step_try = stepping && (!slow || sub);
wire acc_cycle = stepping && slow && !sub;

wire need_in = st_load || st_stream || (st_tail && pre_nz);
wire data_out = in_flush && ovalid_sr[FLUSH-1];
wire drain_out = st_tail && !flush_nz && drain_nz;
// saved drain: the first steps of a job, before any of its own results can leave
// (pd_cnt <= ROWS < ROWS + COLS, the earliest data output), so never together with them
wire pd_out = stepping && pd_nz;
wire need_out = data_out || drain_out || pd_out;
wire out_ok = !m_axis_tvalid || m_axis_tready;

wire go = step_try && (!need_out || out_ok) && (!need_in || s_axis_tvalid);
// the step's conditions that only this module's clocked block reads: blocking temporaries
// computed at the top of that block (below), from the registers and this cycle's stream
// inputs, so that a simulator evaluates them once per clock edge
reg        take;            // an input beat is taken on this step
reg        hdr_take;        // a queue job's header beat is taken
reg        stall_out_c;     // a step waits for the output register
reg        stall_in_c;      // a step (or a header) waits for an input beat
reg        expect_last;     // this step's input beat must carry TLAST
reg        early_tlast;
reg        missing_tlast;
reg        abort;           // the input beat has a wrong TLAST: the job aborts
reg [7:0]  abort_cause;
reg        load_beat;       // the output register takes this step's beat
reg        beat_last;       // ... and it ends the frame
reg        load_term;       // the output register takes the abort beat
reg        frame_open;      // the job's frame is still open after this step's beat
reg        tail_last;       // the job completes on this step
reg [7:0]  pre_err;
reg [7:0]  start_err;
reg        q_first;         // CTRL.QUEUE takes the first header
reg        start_rej;       // a START (or a queue job) is rejected

assign s_axis_tready = (step_try && need_in && (!need_out || out_ok)) || st_discard || st_hdr;

wire is_wload = go && need_in && (st_load || st_tail);

wire can_start = st_idle && !term_pend;
wire start_take = start_req && !soft_req;     // SOFT_RESET wins over START in one write
// CTRL.QUEUE wins over START in one write; a queue job starts in S_QSTART
wire start_now = (start_take && can_start && !q_req) || (st_qstart && !soft_req);
// the same decision as start_err != NONE, from the registered flags (one LUT level less)
wire start_bad = (st_qstart ? hdr_bad : cfg_bad) ||
                 (flags_reg[IG_FLAG_SWAP] && !preloaded) ||
                 (flags_reg[IG_FLAG_DRAIN_PREV] && !saved);
// (a job starts only on a START strobe or in S_QSTART: the test is a conditional, so a
// simulator evaluates the rest only then)
wire start_any = start_req || st_qstart;
wire start_ok = start_any ? start_now && !start_bad : 1'b0;

wire [7:0] load_len = flags_reg[IG_FLAG_TRANSPOSE] ? cols_act_reg : rows_act_reg;

integer c;

// header-beat fields as they arrive (a build too narrow for queues sees zeros: never used)
localparam IN_AXIS_W = ((ROWS+COLS)*DATA_W+7)/8*8;
wire [IG_HDR_BITS-1:0] hdr_word;
generate
    if (QUEUE_OK) begin : g_hdr
        assign hdr_word = s_axis_tdata[IG_HDR_BITS-1:0];
    end else begin : g_hdr_narrow
        assign hdr_word = {{(IG_HDR_BITS-IN_AXIS_W){1'b0}}, s_axis_tdata};
    end
endgenerate
wire [1:0]  in_mode = hdr_word[IG_HDR_MODE_LSB +: IG_HDR_MODE_W];
wire [7:0]  in_flags = hdr_word[IG_HDR_FLAGS_LSB +: IG_HDR_FLAGS_W];
wire [15:0] in_batch = hdr_word[IG_HDR_BATCH_LSB +: IG_HDR_BATCH_W];
wire [7:0]  in_rows = hdr_word[IG_HDR_ROWS_ACT_LSB +: IG_HDR_ROWS_ACT_W];
wire [7:0]  in_cols = hdr_word[IG_HDR_COLS_ACT_LSB +: IG_HDR_COLS_ACT_W];
wire        in_last = hdr_word[IG_HDR_LAST_LSB];


// status
assign st_computing = !st_idle;
assign st_out_pending = m_axis_tvalid || term_pend;
assign st_busy = st_computing || st_out_pending || start_req || soft_req;
assign st_done = done_flag && !st_busy;

// ---------------------------------------------------------------- array
wire [ROWS*ACC_W-1:0]      out_row;
wire [ROWS*COLS*ACC_W-1:0] acc_flat;
wire [ROWS*COLS*ACC_W-1:0] saved_flat;
wire [MAC_W-1:0]           mac_total;

// the accumulators are final after the last flush step: copy them then (SAVE)
wire acc_save = go && st_tail && flush_one && f_save;

intergrad_array #(
    .ROWS(ROWS), .COLS(COLS), .DATA_W(DATA_W), .ACC_W(ACC_W), .DUAL_MAC(DUAL_MAC)
) u_array (
    .clk(clk), .rst(rst),
    .adv(go),
    .acc_go(DUAL_MAC ? (go && (job_os || job_ig)) : (job_os ? go : acc_cycle)),
    .psum_on(job_ws || job_ig),
    .mul_h(job_os || acc_cycle),
    .acc_clear(start_ok && flags_reg[IG_FLAG_ACC_CLEAR]),
    .acc_save(acc_save),
    .pipe_clear(pipe_clear),
    .wsel(wsel),
    .w_upd(w_upd),
    .shape_ld(start_ok),
    .rows_act(rows_act_reg),
    .cols_act(cols_act_reg),
    // weight beats are written on the step that takes them (the dual-MAC PE registers its
    // weight operand: a bank written on the last LOAD step is seen by the first sample)
    .w_we(is_wload),
    .w_bank(~wsel),
    .w_transpose(f_transpose),
    .w_idx(ld_idx),
    .w_left(s_axis_tdata[ROWS*DATA_W-1:0]),
    .w_top(s_axis_tdata[IN_W-1:ROWS*DATA_W]),
    .in_left(s_axis_tdata[ROWS*DATA_W-1:0]),
    .in_top(s_axis_tdata[IN_W-1:ROWS*DATA_W]),
    // the array registers a beat only on a step (adv); in STREAM every step takes one
    .in_valid(st_stream),
    .out_row(out_row),
    .acc_flat(acc_flat),
    .saved_flat(saved_flat),
    .mac_total(mac_total)
);

// ---------------------------------------------------------------- output register
// a row of the accumulators (masked to the active columns), the aligned data row, or the
// abort beat; functions evaluated only in the clocked branch that loads the register
function [OUT_AXIS_W-1:0] drain_beat;
    input [ROWS*COLS*ACC_W-1:0] accs;
    input [7:0] row;
    input [COLS-1:0] colmask;
    integer k;
    begin
        drain_beat = {OUT_AXIS_W{1'b0}};
        for (k = 0; k < COLS; k = k + 1) begin
            if (colmask[k]) begin
                drain_beat[k*ACC_W +: ACC_W] = accs[(row*COLS + k)*ACC_W +: ACC_W];
            end
        end
    end
endfunction

// the aligned data row, zero-extended to the output beat
wire [OUT_AXIS_W-1:0] data_word;
generate
    if (OUT_AXIS_W > ROWS*ACC_W) begin : g_pad
        assign data_word = {{(OUT_AXIS_W-ROWS*ACC_W){1'b0}}, out_row};
    end else begin : g_nopad
        assign data_word = out_row;
    end
endgenerate

wire [OUT_AXIS_W-1:0] abort_word =
    {{(OUT_AXIS_W-IG_ABORT_CAUSE_W){1'b0}}, term_code[IG_ABORT_CAUSE_W-1:0]} <<
    IG_ABORT_CAUSE_LSB;


// ---------------------------------------------------------------- performance counters
// increments registered one cycle, then added: a counter lags its events by two cycles
// (macs by three: the array registers mac_total two cycles after its step)
reg [CNT_W-1:0] cnt [0:NCNT-1];
reg [NCNT-1:0]  inc_q;

// bit i set to b
function [NCNT-1:0] inc_bit;
    input [31:0] i;   // a counter index (not `integer`: pyverilog reads this file)
    input b;
    begin
        inc_bit = {{(NCNT-1){1'b0}}, b} << i;
    end
endfunction


// The clocked block of this module: the job state machine, the output register and the
// performance counters.  Every register is written with
// non-blocking assignments in priority order (a later assignment in the block wins), so a
// register holds unless a condition writes it; the register-file and header checks are
// blocking temporaries (combinational logic registered in cfg_err and hdr_err).
// Order: the counters, then the output register, then the state machine, and inside each a
// register is read before the block writes it (the one-step flags before their counts, the
// tail before the stream and load steps).  The hardware is the same in any order; a
// simulator (Verilator) then needs no shadow copy of those registers, one less copy in and
// out per register and cycle.
/* verilator lint_off BLKSEQ */
always @(posedge clk) begin
    // ---- the step's conditions (see their declarations), blocking temporaries
    take = go && need_in;
    hdr_take = st_hdr && s_axis_tvalid;
    stall_out_c = step_try && need_out && !out_ok;
    stall_in_c = (step_try && !stall_out_c && need_in && !s_axis_tvalid) ||
                 (st_hdr && !s_axis_tvalid);
    // (the last-beat conditions are set only in the steps where a count is at its last,
    // b_one, pre_one, pd_one, dout_one or drain_one, and the tail's only in S_TAIL: the
    // same logic, which a simulator then evaluates only in those steps)
    expect_last = 1'b0;
    if (b_one || pre_one) begin
        expect_last = ((st_stream && b_one && !f_preload) || (st_tail && pre_one)) && job_last;
    end
    early_tlast = take && s_axis_tlast && !expect_last;
    missing_tlast = take && !s_axis_tlast && expect_last;
    abort = early_tlast || missing_tlast;
    abort_cause = early_tlast ? IG_ERR_EARLY_TLAST : IG_ERR_MISSING_TLAST;
    // output beat of this step (loaded on every step that has one, an aborting step too:
    // it carries results of earlier beats) and its TLAST
    load_beat = go && need_out;
    beat_last = 1'b0;
    if (pd_one || dout_one || drain_one) begin
        beat_last = job_last && (pd_out ? (pd_one && job_os && !f_drain) :
                                 data_out ? (dout_one && !f_drain) : drain_one);
    end
    // abort beat into the output register
    load_term = term_pend && out_ok;
    // the job's frame has not ended (nor ends on this step): an abort ends it
    frame_open = !frame_done && !(load_beat && beat_last);
    // the job completes on this step: after it, flush, drain and preload are all done
    tail_last = 1'b0;
    if (st_tail) begin
        tail_last = go && !abort &&
                    (flush_one ? !drain_nz : (!flush_nz && (!drain_nz || drain_one))) &&
                    (!pre_nz || pre_one);
    end
    // start validation: configuration errors registered, pending-state errors now (only
    // on a START or QUEUE strobe or in S_QSTART)
    pre_err = IG_ERR_NONE;
    start_err = IG_ERR_NONE;
    q_first = 1'b0;
    start_rej = 1'b0;
    if (start_any) begin            // a QUEUE strobe is a START strobe too (ctrl_start)
        pre_err = st_qstart ? hdr_err : cfg_err;
        start_err = (pre_err != IG_ERR_NONE) ? pre_err :
                    (flags_reg[IG_FLAG_SWAP] && !preloaded) ? IG_ERR_NO_PRELOAD :
                    (flags_reg[IG_FLAG_DRAIN_PREV] && !saved) ? IG_ERR_NO_SAVED :
                    IG_ERR_NONE;
        q_first = q_req && !soft_req && can_start;
        start_rej = start_now && start_bad;
    end

    // ---- performance counters (first: they read the output register's TVALID, and the
    // snapshot reads the counters, before this block writes them)
    // the snapshot is taken at the edge that applies the CNT_SNAPSHOT write
    if (ctrl_cnt_snapshot) begin
        for (c = 0; c < NCNT; c = c + 1) begin
            snap_flat[c*CNT_W +: CNT_W] <= cnt[c];
        end
    end
    for (c = 0; c < NCNT; c = c + 1) begin
        if (c == IG_CNT_MACS) begin
            cnt[c] <= cnt[c] + {{(CNT_W-MAC_W){1'b0}}, mac_total};
        end else begin
            cnt[c] <= cnt[c] + {{(CNT_W-1){1'b0}}, inc_q[c]};
        end
    end

    if (rst || ctrl_cnt_reset) begin
        for (c = 0; c < NCNT; c = c + 1) begin
            cnt[c] <= {CNT_W{1'b0}};
        end
    end
    // one bit per counter (an OR of constant shifts: a simulator folds it into a few
    // operations, where it would insert bit by bit)
    inc_q <= inc_bit(IG_CNT_CYCLES, 1'b1) |
             inc_bit(IG_CNT_BUSY_CYCLES, stepping || st_hdr) |
             inc_bit(IG_CNT_STEPS, go) |
             inc_bit(IG_CNT_IN_BEATS, take || hdr_take) |
             inc_bit(IG_CNT_WLOAD_BEATS, is_wload) |
             inc_bit(IG_CNT_OUT_BEATS, m_axis_tvalid && m_axis_tready) |
             inc_bit(IG_CNT_STALL_IN, stall_in_c) |
             inc_bit(IG_CNT_STALL_OUT, stall_out_c) |
             inc_bit(IG_CNT_JOBS, tail_last);

    if (rst) begin
        inc_q <= {NCNT{1'b0}};
        snap_flat <= {NCNT*CNT_W{1'b0}};
    end

    // ---- output register: TVALID falls only on a handshake; TDATA/TLAST change only when
    // the register is free
    if (m_axis_tvalid && m_axis_tready) begin
        m_axis_tvalid <= 1'b0;
    end
    if (load_term) begin
        m_axis_tvalid <= 1'b1;
        m_axis_tdata <= abort_word;
        m_axis_tlast <= 1'b1;
    end else if (load_beat) begin
        m_axis_tvalid <= 1'b1;
        m_axis_tlast <= beat_last;
        if (pd_out) begin
            m_axis_tdata <= drain_beat(saved_flat, pd_idx, sh_colmask);
        end else if (data_out) begin
            m_axis_tdata <= data_word;
        end else begin
            m_axis_tdata <= drain_beat(acc_flat, drain_idx, job_colmask);
        end
    end
    if (rst) begin
        m_axis_tvalid <= 1'b0;
        m_axis_tlast <= 1'b0;
    end

    // ---- the job state machine
    if (load_beat && beat_last) begin
        frame_done <= 1'b1;
    end
    if (out_ok) begin
        term_pend <= 1'b0;
    end
    pipe_clear <= 1'b0;

    // array steps
    if (go) begin
        ovalid_sr <= {ovalid_sr[FLUSH-2:0], st_stream && !job_os};
        sub <= 1'b0;
    end else if (acc_cycle) begin
        sub <= 1'b1;
    end
    if (go && data_out) begin
        dout_one <= dout_cnt == 16'd2;
        dout_cnt <= dout_cnt - 16'd1;
    end
    if (go && pd_out) begin
        pd_nz <= !pd_one;
        pd_one <= pd_cnt == 8'd2;
        pd_cnt <= pd_cnt - 8'd1;
        pd_idx <= pd_idx + 8'd1;
    end
    if (acc_save) begin
        saved <= 1'b1;
    end

    // the tail, stream and load steps (exclusive states), in this order: every register
    // here is read before any of these write it (a simulator then needs no shadow copy)
    if (st_tail && go) begin
        if (flush_nz) begin
            flush_nz <= !flush_one;
            flush_one <= flush_cnt == 8'd2;
            flush_cnt <= flush_cnt - 8'd1;
        end else if (drain_nz) begin
            drain_nz <= !drain_one;
            drain_one <= drain_cnt == 8'd2;
            drain_cnt <= drain_cnt - 8'd1;
            drain_idx <= drain_idx + 8'd1;
        end
        if (pre_nz) begin
            pre_nz <= !pre_one;
            pre_one <= pre_cnt == 8'd2;
            pre_cnt <= pre_cnt - 8'd1;
        end
    end
    if (st_stream && go) begin
        b_one <= b_cnt == 16'd2;
        b_cnt <= b_cnt - 16'd1;
        if (b_one) begin
            flush_cnt <= FLUSH[7:0];
            flush_nz <= 1'b1;
            flush_one <= 1'b0;          // FLUSH >= 2
            drain_cnt <= f_drain ? job_rows : 8'd0;
            drain_nz <= f_drain;        // job_rows >= 1
            drain_one <= f_drain && job_rows == 8'd1;
            drain_idx <= 8'd0;
            pre_cnt <= f_preload ? job_wlen : 8'd0;
            pre_nz <= f_preload;
            pre_one <= f_preload && job_wlen == 8'd1;
        end
    end
    if (st_load && go) begin
        ld_one <= ld_cnt == 8'd2;
        ld_cnt <= ld_cnt - 8'd1;
    end
    // the weight beat index: LOAD_W beats, then the preload beats of the tail
    if (is_wload) begin
        ld_idx <= (st_load && ld_one) ? 8'd0 : ld_idx + 8'd1;
    end
    // the active bank toggles at the end of LOAD_W, and at a start with SWAP
    if ((st_load && go && ld_one) || (start_ok && flags_reg[IG_FLAG_SWAP])) begin
        wsel <= ~wsel;
    end
    if (tail_last) begin
        done_flag <= job_last;
        if (job_q) begin
            q_job <= q_job + 16'd1;
        end
        if (f_preload) begin
            preloaded <= 1'b1;
        end
    end
    if (st_discard && s_axis_tvalid && s_axis_tlast) begin
        state <= ST_IDLE;
    end
    if (hdr_take) begin
        state <= ST_QSTART;
    end

    // an input beat with a wrong TLAST aborts the job; its frame ends with the abort beat
    // unless it has ended already (on this step too)
    if (abort) begin
        err_flag <= 1'b1;
        err_cause <= abort_cause;
        ovalid_sr <= {FLUSH{1'b0}};
        pd_cnt <= 8'd0;
        pd_nz <= 1'b0;
        pd_one <= 1'b0;
        pipe_clear <= 1'b1;
        if (frame_open) begin
            term_pend <= 1'b1;
            term_code <= abort_cause;
        end
    end

    // START
    if (start_req && !can_start) begin
        // a job (or its discard, or an abort beat) is still in progress: start nothing
        if (!abort) begin
            err_flag <= 1'b1;
            err_cause <= IG_ERR_START_BUSY;
        end
    end
    if (start_rej) begin
        // rejected: the frame of this START is the abort beat alone
        err_flag <= 1'b1;
        err_cause <= start_err;
        done_flag <= 1'b0;
        term_pend <= 1'b1;
        term_code <= start_err;
        // a rejected queue job ends the queue: the rest of the input up to its TLAST goes
        if (st_qstart) begin
            state <= hdr_early ? ST_IDLE : ST_DISCARD;
        end
    end
    // QUEUE: take the first header (or reject the queue on a build too narrow for headers)
    if (q_first) begin
        done_flag <= 1'b0;
        err_flag <= !QUEUE_OK;
        err_cause <= QUEUE_OK ? IG_ERR_NONE : IG_ERR_BAD_HEADER;
        frame_done <= 1'b0;
        q_job <= 16'd0;
        if (QUEUE_OK) begin
            state <= ST_HDR;
        end else begin
            term_pend <= 1'b1;
            term_code <= IG_ERR_BAD_HEADER;
        end
    end
    if (start_ok) begin
        // a queue's status and frame were cleared when it started
        if (!st_qstart) begin
            done_flag <= 1'b0;
            err_flag <= 1'b0;
            err_cause <= IG_ERR_NONE;
            frame_done <= 1'b0;
        end
        ld_idx <= 8'd0;
        ld_cnt <= load_len;
        ld_one <= load_len == 8'd1;
        b_cnt <= batch_reg;
        b_one <= batch_reg == 16'd1;
        dout_cnt <= (mode_reg == IG_MODE_OS) ? 16'd0 : batch_reg;
        dout_one <= (mode_reg != IG_MODE_OS) && batch_reg == 16'd1;
        sub <= 1'b0;
        // the shadow bank is written by LOAD_W and PRELOAD, made active by SWAP (wsel above)
        if (flags_reg[IG_FLAG_SWAP] || flags_reg[IG_FLAG_LOAD_W] ||
            flags_reg[IG_FLAG_PRELOAD]) begin
            preloaded <= 1'b0;
        end
        if (flags_reg[IG_FLAG_DRAIN_PREV]) begin
            saved <= 1'b0;
            pd_cnt <= sh_rows;
            pd_nz <= 1'b1;               // sh_rows >= 1
            pd_one <= sh_rows == 8'd1;
            pd_idx <= 8'd0;
        end
        state <= flags_reg[IG_FLAG_LOAD_W] ? ST_LOAD : ST_STREAM;
    end

    // SOFT_RESET: abort a stepping job (abort beat, cause SOFT_RESET, unless its frame has
    // ended), keep a pending beat or abort beat, clear the job and status state
    if (soft_req) begin
        if ((stepping || st_hdr || st_qstart) && frame_open) begin
            term_pend <= 1'b1;
            term_code <= IG_ERR_SOFT_RESET;
        end
        state <= ST_IDLE;
        sub <= 1'b0;
        preloaded <= 1'b0;
        saved <= 1'b0;
        pd_cnt <= 8'd0;
        pd_nz <= 1'b0;
        pd_one <= 1'b0;
        done_flag <= 1'b0;
        err_flag <= 1'b0;
        err_cause <= IG_ERR_NONE;
        ovalid_sr <= {FLUSH{1'b0}};
        pipe_clear <= 1'b1;
    end
    // the transitions of a stepping job: an abort (to IDLE, or DISCARD the rest of its
    // input), else the job's last step (to IDLE, or in a queue on to the next header), else
    // the last weight beat (to STREAM) or the last data beat (to TAIL).
    // Written last because their conditions arrive last (from the stream handshakes): they
    // are exclusive with every transition above (other states) but a soft reset, which wins
    if (!soft_req) begin
        if (abort) begin
            state <= early_tlast ? ST_IDLE : ST_DISCARD;
        end else if (tail_last) begin
            state <= job_last ? ST_IDLE : ST_HDR;
        end else if (st_load && go && ld_one) begin
            state <= ST_STREAM;
        end else if (st_stream && go && b_one) begin
            state <= ST_TAIL;
        end
    end

    // ---- registers without a next-state rule above
    if (acc_save) begin
        sh_rows <= job_rows;
        sh_colmask <= job_colmask;
    end
    start_req <= ctrl_start;
    q_req <= ctrl_queue;
    soft_req <= ctrl_soft_reset;
    // configuration errors of the programmed job, registered (the register file changes
    // only by writes, two or more cycles before a START strobe), recomputed in the cycle
    // after a write or a reset (their only changes)
    if (fields_upd) begin
        cfg_err_next =
            (mode_prog > IG_MODE_IG) ? IG_ERR_BAD_MODE :
            (batch_prog == 16'd0 || rows_act_prog == 8'd0 || rows_act_prog > ROWS[7:0] ||
             cols_act_prog == 8'd0 || cols_act_prog > COLS[7:0]) ? IG_ERR_BAD_SHAPE :
            ((flags_prog[IG_FLAG_LOAD_W] && flags_prog[IG_FLAG_SWAP]) ||
             (flags_prog[IG_FLAG_SAVE] && flags_prog[IG_FLAG_DRAIN])) ? IG_ERR_BAD_FLAGS :
            IG_ERR_NONE;
        cfg_err <= cfg_err_next;
        cfg_bad <= cfg_err_next != IG_ERR_NONE;
    end
    if (start_ok) begin
        job_last <= !st_qstart || hdr_last;
        job_q <= st_qstart;
        job_ws <= mode_reg == IG_MODE_WS;
        job_os <= mode_reg == IG_MODE_OS;
        job_ig <= mode_reg == IG_MODE_IG;
        job_flags <= flags_reg;
        job_rows <= rows_act_reg;
        job_wlen <= load_len;
        for (c = 0; c < COLS; c = c + 1) begin
            job_colmask[c] <= c < cols_act_reg;
        end
    end
    if (hdr_take) begin
        // the same checks on a header beat, then the queue's own: a header with TLAST ends
        // the input before the job's beats; a LAST job must produce the frame's TLAST beat
        hdr_err_next =
            (hdr_word[IG_HDR_TAG_LSB +: IG_HDR_TAG_W] != IG_HDR_TAG) ? IG_ERR_BAD_HEADER :
            (in_mode > IG_MODE_IG) ? IG_ERR_BAD_MODE :
            (in_batch == 16'd0 || in_rows == 8'd0 || in_rows > ROWS[7:0] ||
             in_cols == 8'd0 || in_cols > COLS[7:0]) ? IG_ERR_BAD_SHAPE :
            ((in_flags[IG_FLAG_LOAD_W] && in_flags[IG_FLAG_SWAP]) ||
             (in_flags[IG_FLAG_SAVE] && in_flags[IG_FLAG_DRAIN])) ? IG_ERR_BAD_FLAGS :
            s_axis_tlast ? IG_ERR_EARLY_TLAST :
            (in_last && in_mode == IG_MODE_OS && !in_flags[IG_FLAG_DRAIN] &&
             !in_flags[IG_FLAG_DRAIN_PREV]) ? IG_ERR_BAD_HEADER :
            IG_ERR_NONE;
        hdr_err <= hdr_err_next;
        hdr_bad <= hdr_err_next != IG_ERR_NONE;
        hdr_early <= hdr_err_next == IG_ERR_EARLY_TLAST;
        hdr_mode <= in_mode;
        hdr_flags <= in_flags;
        hdr_batch <= in_batch;
        hdr_rows <= in_rows;
        hdr_cols <= in_cols;
        hdr_last <= in_last;
    end
    // the active bank (wsel), its contents (the last LOAD_W beat) and psum_on (the job's
    // mode) change only at a job start and at the end of LOAD_W: the PEs load their psum
    // weight operand in the next cycle, before the job's first sample reaches them (at the
    // earliest on the second step after that)
    w_upd <= start_ok || (st_load && go && ld_one);

    if (rst) begin
        w_upd <= 1'b1;      // loads the cleared banks (w_clr clears the operand too)
        state <= ST_IDLE;
        start_req <= 1'b0;
        q_req <= 1'b0;
        soft_req <= 1'b0;
        q_job <= 16'd0;
        job_last <= 1'b1;
        job_q <= 1'b0;
        sub <= 1'b0;
        wsel <= 1'b0;
        preloaded <= 1'b0;
        saved <= 1'b0;
        pd_cnt <= 8'd0;
        pd_nz <= 1'b0;
        pd_one <= 1'b0;
        flush_nz <= 1'b0;
        drain_nz <= 1'b0;
        pre_nz <= 1'b0;
        done_flag <= 1'b0;
        err_flag <= 1'b0;
        err_cause <= IG_ERR_NONE;
        ovalid_sr <= {FLUSH{1'b0}};
        frame_done <= 1'b1;
        term_pend <= 1'b0;
        term_code <= IG_ERR_NONE;
        pipe_clear <= 1'b0;
        job_ws <= 1'b1;
        job_os <= 1'b0;
        job_ig <= 1'b0;
        job_flags <= 8'd0;
        job_rows <= ROWS[7:0];
        job_wlen <= ROWS[7:0];
        job_colmask <= {COLS{1'b1}};
    end

end
/* verilator lint_on BLKSEQ */

endmodule

`resetall
