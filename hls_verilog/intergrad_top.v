/*
 * intergrad: configurable WS / OS / InterGrad systolic array core.
 *
 * One AXI4-Stream input (weights and data), one AXI4-Stream output (results and
 * accumulator drain), an AXI4-Lite slave for identification, build configuration,
 * job control, status and 64-bit performance counters.  The register map and codes
 * come from intergrad_regs.vh, generated from host/intergrad/spec.py.
 *
 * The array advances in global steps: a step happens when the beat it consumes (if any)
 * is valid and the output register can take the beat it produces (if any); otherwise the
 * whole array holds and the cycle is counted as an input or output stall.  Step counts
 * are therefore fixed by the job, whatever the stream timing.
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
    output reg                                          s_axil_bvalid,
    input  wire                                         s_axil_bready,
    input  wire [7:0]                                   s_axil_araddr,
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire [2:0]                                   s_axil_arprot,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire                                         s_axil_arvalid,
    output wire                                         s_axil_arready,
    output reg  [31:0]                                  s_axil_rdata,
    output wire [1:0]                                   s_axil_rresp,
    output reg                                          s_axil_rvalid,
    input  wire                                         s_axil_rready
);

`include "intergrad_regs.vh"

localparam OUT_LANES = (ROWS > COLS) ? ROWS : COLS;
localparam OUT_AXIS_W = (OUT_LANES*ACC_W+7)/8*8;
localparam FLUSH = ROWS + COLS;
localparam MAC_W = $clog2(2*ROWS*COLS+1);
localparam CNT_W = 64;
localparam NCNT = IG_NUM_COUNTERS;

initial begin
    if (ROWS < 1 || ROWS > 64 || COLS < 1 || COLS > 64) begin
        $error("intergrad_top: ROWS and COLS must be in 1..64");
        $finish;
    end
    if (ACC_W < 2*DATA_W || ACC_W > 62) begin
        $error("intergrad_top: ACC_W must be in 2*DATA_W..62");
        $finish;
    end
end

// ---------------------------------------------------------------- job state machine
localparam [2:0] ST_IDLE = 3'd0, ST_LOAD = 3'd1, ST_STREAM = 3'd2, ST_TAIL = 3'd3,
                 ST_DISCARD = 3'd4;

reg [2:0]  state;

// programmed job description
reg [1:0]  mode_reg;
reg [7:0]  flags_reg;
reg [15:0] batch_reg;
reg [7:0]  rows_act_reg;
reg [7:0]  cols_act_reg;

// running job
reg [1:0]  job_mode;
reg [7:0]  job_flags;
reg [7:0]  job_rows;
reg [7:0]  job_cols;
reg [7:0]  ld_idx;        // weight beat index (LOAD and preload)
reg [7:0]  ld_cnt;        // weight beats left in LOAD
reg [15:0] b_cnt;        // data beats left in STREAM
reg [15:0] dout_cnt;     // data output beats left
reg [15:0] flush_cnt;    // flush steps left in TAIL
reg [7:0]  drain_cnt;     // drain beats left in TAIL
reg [7:0]  drain_idx;
reg [7:0]  pre_cnt;       // preload beats left in TAIL
reg        sub;           // DUAL_MAC=0, IG: accumulate cycle done for this step
reg        wsel;          // active weight bank
reg        preloaded;
reg        saved;           // accumulators saved in the drain buffer (SAVE), not yet drained
reg [7:0]  sh_rows;         // shape of the saved tile
reg [7:0]  sh_cols;
reg [7:0]  pd_cnt;          // saved-drain beats left (DRAIN_PREV)
reg [7:0]  pd_idx;
reg        done_flag;
reg        err_flag;
reg [7:0]  err_cause;
reg [FLUSH-1:0] ovalid_sr;

// control strobes from the register file
reg        start_req;
reg        soft_reset_req;
reg        cnt_reset_req;
reg        cnt_snap_req;

wire job_ws = job_mode == IG_MODE_WS;
wire job_os = job_mode == IG_MODE_OS;
wire job_ig = job_mode == IG_MODE_IG;
wire f_transpose = job_flags[IG_FLAG_TRANSPOSE];
wire f_drain = job_flags[IG_FLAG_DRAIN];
wire f_preload = job_flags[IG_FLAG_PRELOAD];
wire f_save = job_flags[IG_FLAG_SAVE];

wire in_flush = (state == ST_STREAM) || (state == ST_TAIL && flush_cnt != 16'd0);
wire slow = (DUAL_MAC == 0) && job_ig && in_flush;
wire stepping = (state == ST_LOAD) || (state == ST_STREAM) || (state == ST_TAIL);
wire step_try = stepping && (!slow || sub);
wire acc_cycle = stepping && slow && !sub;

wire need_in = (state == ST_LOAD) || (state == ST_STREAM) || (state == ST_TAIL && pre_cnt != 8'd0);
wire data_out = in_flush && ovalid_sr[FLUSH-1];
wire drain_out = (state == ST_TAIL) && (flush_cnt == 16'd0) && (drain_cnt != 8'd0);
// saved drain: the first steps of a job, before any of its own results can leave
// (pd_cnt <= ROWS < ROWS + COLS, the earliest data output), so never together with them
wire pd_out = stepping && (pd_cnt != 8'd0);
wire need_out = data_out || drain_out || pd_out;
wire out_ok = !m_axis_tvalid || m_axis_tready;

wire go = step_try && (!need_out || out_ok) && (!need_in || s_axis_tvalid);
wire take = go && need_in;
wire stall_out_c = step_try && need_out && !out_ok;
wire stall_in_c = step_try && !stall_out_c && need_in && !s_axis_tvalid;

assign s_axis_tready = (step_try && need_in && (!need_out || out_ok)) || (state == ST_DISCARD);

wire expect_last = (state == ST_STREAM && b_cnt == 16'd1 && !f_preload) ||
                   (state == ST_TAIL && pre_cnt == 8'd1);
wire early_tlast = take && s_axis_tlast && !expect_last;
wire missing_tlast = take && !s_axis_tlast && expect_last;
wire abort = early_tlast || missing_tlast;

wire is_wload = take && ((state == ST_LOAD) || (state == ST_TAIL));
wire is_data = take && (state == ST_STREAM);

// job completes on this step
wire tail_last = (state == ST_TAIL) && go && !abort &&
                 (flush_cnt <= 16'd1) &&
                 (flush_cnt == 16'd1 ? (drain_cnt == 8'd0) : (drain_cnt <= 8'd1)) &&
                 (pre_cnt <= 8'd1);

// start validation
wire [7:0] start_err =
    (mode_reg > IG_MODE_IG) ? IG_ERR_BAD_MODE :
    (batch_reg == 16'd0 || rows_act_reg == 8'd0 || rows_act_reg > ROWS[7:0] ||
     cols_act_reg == 8'd0 || cols_act_reg > COLS[7:0]) ? IG_ERR_BAD_SHAPE :
    ((flags_reg[IG_FLAG_LOAD_W] && flags_reg[IG_FLAG_SWAP]) ||
     (flags_reg[IG_FLAG_SAVE] && flags_reg[IG_FLAG_DRAIN])) ? IG_ERR_BAD_FLAGS :
    (flags_reg[IG_FLAG_SWAP] && !preloaded) ? IG_ERR_NO_PRELOAD :
    (flags_reg[IG_FLAG_DRAIN_PREV] && !saved) ? IG_ERR_NO_SAVED :
    IG_ERR_NONE;
wire start_ok = start_req && (state == ST_IDLE) && (start_err == IG_ERR_NONE);

wire [7:0] load_len = flags_reg[IG_FLAG_TRANSPOSE] ? cols_act_reg : rows_act_reg;
wire [7:0] job_load_len = f_transpose ? job_cols : job_rows;

// ---------------------------------------------------------------- array
wire [ROWS*ACC_W-1:0]      out_row;
wire [ROWS*COLS*ACC_W-1:0] acc_flat;
wire [ROWS*COLS*ACC_W-1:0] saved_flat;
wire [MAC_W-1:0]           mac_total;

wire pipe_clear = soft_reset_req || abort;
wire acc_clear = start_ok && flags_reg[IG_FLAG_ACC_CLEAR];
// the accumulators are final after the last flush step: copy them then (SAVE)
wire acc_save = go && (state == ST_TAIL) && (flush_cnt == 16'd1) && f_save;

intergrad_array #(
    .ROWS(ROWS), .COLS(COLS), .DATA_W(DATA_W), .ACC_W(ACC_W), .DUAL_MAC(DUAL_MAC)
) u_array (
    .clk(clk), .rst(rst),
    .adv(go),
    .acc_go(DUAL_MAC ? (go && (job_os || job_ig)) : (job_os ? go : acc_cycle)),
    .psum_on(job_ws || job_ig),
    .mul_h(job_os || acc_cycle),
    .acc_clear(acc_clear),
    .acc_save(acc_save),
    .pipe_clear(pipe_clear),
    .wsel(wsel),
    .shape_ld(start_ok),
    .rows_act(rows_act_reg),
    .cols_act(cols_act_reg),
    .w_we(is_wload && !abort),
    .w_bank(~wsel),
    .w_transpose(f_transpose),
    .w_idx(ld_idx),
    .w_left(s_axis_tdata[ROWS*DATA_W-1:0]),
    .w_top(s_axis_tdata[(ROWS+COLS)*DATA_W-1:ROWS*DATA_W]),
    .in_left(s_axis_tdata[ROWS*DATA_W-1:0]),
    .in_top(s_axis_tdata[(ROWS+COLS)*DATA_W-1:ROWS*DATA_W]),
    .in_valid(is_data),
    .out_row(out_row),
    .acc_flat(acc_flat),
    .saved_flat(saved_flat),
    .mac_total(mac_total)
);

// output beats: a row of the accumulators (masked to the active columns) or the aligned
// data row; functions evaluated only in the clocked branch that loads the output register
function [OUT_AXIS_W-1:0] drain_beat;
    input [ROWS*COLS*ACC_W-1:0] accs;
    input [7:0] row;
    input [7:0] ncols;
    integer k;
    begin
        drain_beat = {OUT_AXIS_W{1'b0}};
        for (k = 0; k < COLS; k = k + 1) begin
            if (k < ncols) begin
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

// ---------------------------------------------------------------- sequencing
always @(posedge clk) begin
    if (m_axis_tvalid && m_axis_tready) begin
        m_axis_tvalid <= 1'b0;
    end

    if (go) begin
        ovalid_sr <= {ovalid_sr[FLUSH-2:0], is_data && !job_os};
        sub <= 1'b0;
    end else if (acc_cycle) begin
        sub <= 1'b1;
    end

    if (go && need_out && !abort) begin
        m_axis_tvalid <= 1'b1;
        if (pd_out) begin
            m_axis_tdata <= drain_beat(saved_flat, pd_idx, sh_cols);
            m_axis_tlast <= (pd_cnt == 8'd1) && (dout_cnt == 16'd0) && !f_drain;
        end else if (data_out) begin
            m_axis_tdata <= data_word;
            m_axis_tlast <= (dout_cnt == 16'd1) && !f_drain;
        end else begin
            m_axis_tdata <= drain_beat(acc_flat, drain_idx, job_cols);
            m_axis_tlast <= drain_cnt == 8'd1;
        end
    end
    if (go && data_out) begin
        dout_cnt <= dout_cnt - 16'd1;
    end
    if (go && pd_out) begin
        pd_cnt <= pd_cnt - 8'd1;
        pd_idx <= pd_idx + 8'd1;
    end
    if (acc_save) begin
        saved <= 1'b1;
        sh_rows <= job_rows;
        sh_cols <= job_cols;
    end

    if (start_req && state != ST_IDLE) begin
        err_flag <= 1'b1;
        err_cause <= IG_ERR_START_BUSY;
    end else if (start_req && start_err != IG_ERR_NONE) begin
        err_flag <= 1'b1;
        err_cause <= start_err;
        done_flag <= 1'b0;
    end

    if (start_ok) begin
        job_mode <= mode_reg;
        job_flags <= flags_reg;
        job_rows <= rows_act_reg;
        job_cols <= cols_act_reg;
        done_flag <= 1'b0;
        err_flag <= 1'b0;
        err_cause <= IG_ERR_NONE;
        ld_idx <= 8'd0;
        ld_cnt <= load_len;
        b_cnt <= batch_reg;
        dout_cnt <= (mode_reg == IG_MODE_OS) ? 16'd0 : batch_reg;
        sub <= 1'b0;
        if (flags_reg[IG_FLAG_SWAP]) begin
            wsel <= ~wsel;
            preloaded <= 1'b0;
        end
        if (flags_reg[IG_FLAG_LOAD_W]) begin
            preloaded <= 1'b0;
        end
        if (flags_reg[IG_FLAG_DRAIN_PREV]) begin
            saved <= 1'b0;
            pd_cnt <= sh_rows;
            pd_idx <= 8'd0;
        end
        state <= flags_reg[IG_FLAG_LOAD_W] ? ST_LOAD : ST_STREAM;
    end

    case (state)
        ST_LOAD: begin
            if (go) begin
                ld_idx <= ld_idx + 8'd1;
                ld_cnt <= ld_cnt - 8'd1;
                if (ld_cnt == 8'd1) begin
                    wsel <= ~wsel;
                    ld_idx <= 8'd0;
                    state <= ST_STREAM;
                end
            end
        end
        ST_STREAM: begin
            if (go) begin
                b_cnt <= b_cnt - 16'd1;
                if (b_cnt == 16'd1) begin
                    flush_cnt <= FLUSH[15:0];
                    drain_cnt <= f_drain ? job_rows : 8'd0;
                    drain_idx <= 8'd0;
                    pre_cnt <= f_preload ? job_load_len : 8'd0;
                    state <= ST_TAIL;
                end
            end
        end
        ST_TAIL: begin
            if (go) begin
                if (flush_cnt != 16'd0) begin
                    flush_cnt <= flush_cnt - 16'd1;
                end else if (drain_cnt != 8'd0) begin
                    drain_cnt <= drain_cnt - 8'd1;
                    drain_idx <= drain_idx + 8'd1;
                end
                if (pre_cnt != 8'd0) begin
                    pre_cnt <= pre_cnt - 8'd1;
                    ld_idx <= ld_idx + 8'd1;
                end
                if (tail_last) begin
                    state <= ST_IDLE;
                    done_flag <= 1'b1;
                    if (f_preload) begin
                        preloaded <= 1'b1;
                    end
                end
            end
        end
        ST_DISCARD: begin
            if (s_axis_tvalid && s_axis_tlast) begin
                state <= ST_IDLE;
            end
        end
        default: begin
        end
    endcase

    if (abort) begin
        err_flag <= 1'b1;
        err_cause <= early_tlast ? IG_ERR_EARLY_TLAST : IG_ERR_MISSING_TLAST;
        ovalid_sr <= {FLUSH{1'b0}};
        pd_cnt <= 8'd0;
        state <= early_tlast ? ST_IDLE : ST_DISCARD;
    end

    if (rst || soft_reset_req) begin
        state <= ST_IDLE;
        sub <= 1'b0;
        preloaded <= 1'b0;
        saved <= 1'b0;
        pd_cnt <= 8'd0;
        done_flag <= 1'b0;
        err_flag <= 1'b0;
        err_cause <= IG_ERR_NONE;
        ovalid_sr <= {FLUSH{1'b0}};
        m_axis_tvalid <= 1'b0;
        m_axis_tlast <= 1'b0;
    end
    if (rst) begin
        wsel <= 1'b0;
        job_mode <= IG_MODE_WS;
        job_flags <= 8'd0;
        job_rows <= ROWS[7:0];
        job_cols <= COLS[7:0];
    end
end

// ---------------------------------------------------------------- performance counters
reg [CNT_W-1:0] cnt [0:NCNT-1];
reg [CNT_W-1:0] snap [0:NCNT-1];
integer c;

wire busy = state != ST_IDLE;

always @(posedge clk) begin
    cnt[IG_CNT_CYCLES] <= cnt[IG_CNT_CYCLES] + 1'b1;
    cnt[IG_CNT_BUSY_CYCLES] <= cnt[IG_CNT_BUSY_CYCLES] + {{(CNT_W-1){1'b0}}, busy};
    cnt[IG_CNT_STEPS] <= cnt[IG_CNT_STEPS] + {{(CNT_W-1){1'b0}}, go};
    cnt[IG_CNT_MACS] <= cnt[IG_CNT_MACS] + {{(CNT_W-MAC_W){1'b0}}, mac_total};
    cnt[IG_CNT_IN_BEATS] <= cnt[IG_CNT_IN_BEATS] +
        {{(CNT_W-1){1'b0}}, s_axis_tvalid && s_axis_tready};
    cnt[IG_CNT_WLOAD_BEATS] <= cnt[IG_CNT_WLOAD_BEATS] + {{(CNT_W-1){1'b0}}, is_wload};
    cnt[IG_CNT_OUT_BEATS] <= cnt[IG_CNT_OUT_BEATS] +
        {{(CNT_W-1){1'b0}}, m_axis_tvalid && m_axis_tready};
    cnt[IG_CNT_STALL_IN] <= cnt[IG_CNT_STALL_IN] + {{(CNT_W-1){1'b0}}, stall_in_c};
    cnt[IG_CNT_STALL_OUT] <= cnt[IG_CNT_STALL_OUT] + {{(CNT_W-1){1'b0}}, stall_out_c};
    cnt[IG_CNT_JOBS] <= cnt[IG_CNT_JOBS] + {{(CNT_W-1){1'b0}}, tail_last};

    if (cnt_snap_req) begin
        for (c = 0; c < NCNT; c = c + 1) begin
            snap[c] <= cnt[c];
        end
    end
    if (rst || cnt_reset_req) begin
        for (c = 0; c < NCNT; c = c + 1) begin
            cnt[c] <= {CNT_W{1'b0}};
        end
    end
    if (rst) begin
        for (c = 0; c < NCNT; c = c + 1) begin
            snap[c] <= {CNT_W{1'b0}};
        end
    end
end

// ---------------------------------------------------------------- AXI4-Lite slave
wire wr_fire = s_axil_awvalid && s_axil_wvalid && !s_axil_bvalid;
wire rd_fire = s_axil_arvalid && !s_axil_rvalid;

assign s_axil_awready = wr_fire;
assign s_axil_wready = wr_fire;
assign s_axil_bresp = 2'b00;
assign s_axil_arready = rd_fire;
assign s_axil_rresp = 2'b00;

wire [31:0] mode_word = {16'd0, flags_reg, 6'd0, mode_reg};
wire [31:0] batch_word = {16'd0, batch_reg};
wire [31:0] shape_word = {8'd0, cols_act_reg, 8'd0, rows_act_reg};
wire [31:0] status_word = {16'd0, err_cause, 3'd0, saved, preloaded, err_flag, done_flag, busy};
wire [31:0] cfg_array_word = {15'd0, DUAL_MAC[0], COLS[7:0], ROWS[7:0]};
wire [31:0] cfg_width_word = {16'd0, ACC_W[7:0], DATA_W[7:0]};

/* verilator lint_off UNUSEDSIGNAL */
wire [7:0] rd_cnt_off = s_axil_araddr - IG_COUNTER_BASE;
wire [4:0] rd_cnt_idx = rd_cnt_off[7:3];
/* verilator lint_on UNUSEDSIGNAL */

// register writes take the bytes enabled by wstrb (every field lies within whole bytes);
// reads are decoded in the clocked branch that answers them
integer wb;

always @(posedge clk) begin
    start_req <= 1'b0;
    soft_reset_req <= 1'b0;
    cnt_reset_req <= 1'b0;
    cnt_snap_req <= 1'b0;

    if (s_axil_bvalid && s_axil_bready) begin
        s_axil_bvalid <= 1'b0;
    end
    if (s_axil_rvalid && s_axil_rready) begin
        s_axil_rvalid <= 1'b0;
    end

    if (wr_fire) begin
        s_axil_bvalid <= 1'b1;
        case (s_axil_awaddr & 8'hFC)
            IG_REG_CTRL: begin
                if (s_axil_wstrb[0]) begin
                    start_req <= s_axil_wdata[IG_CTRL_START_LSB];
                    soft_reset_req <= s_axil_wdata[IG_CTRL_SOFT_RESET_LSB];
                    cnt_reset_req <= s_axil_wdata[IG_CTRL_CNT_RESET_LSB];
                    cnt_snap_req <= s_axil_wdata[IG_CTRL_CNT_SNAPSHOT_LSB];
                end
            end
            IG_REG_MODE: begin
                if (s_axil_wstrb[IG_MODE_MODE_LSB/8]) begin
                    mode_reg <= s_axil_wdata[IG_MODE_MODE_LSB +: IG_MODE_MODE_W];
                end
                if (s_axil_wstrb[IG_MODE_FLAGS_LSB/8]) begin
                    flags_reg <= s_axil_wdata[IG_MODE_FLAGS_LSB +: IG_MODE_FLAGS_W];
                end
            end
            IG_REG_BATCH: begin
                for (wb = 0; wb < IG_BATCH_BATCH_W/8; wb = wb + 1) begin
                    if (s_axil_wstrb[IG_BATCH_BATCH_LSB/8 + wb]) begin
                        batch_reg[wb*8 +: 8] <= s_axil_wdata[IG_BATCH_BATCH_LSB + wb*8 +: 8];
                    end
                end
            end
            IG_REG_SHAPE: begin
                if (s_axil_wstrb[IG_SHAPE_ROWS_ACT_LSB/8]) begin
                    rows_act_reg <= s_axil_wdata[IG_SHAPE_ROWS_ACT_LSB +: IG_SHAPE_ROWS_ACT_W];
                end
                if (s_axil_wstrb[IG_SHAPE_COLS_ACT_LSB/8]) begin
                    cols_act_reg <= s_axil_wdata[IG_SHAPE_COLS_ACT_LSB +: IG_SHAPE_COLS_ACT_W];
                end
            end
            default: begin
            end
        endcase
    end

    if (rd_fire) begin
        s_axil_rvalid <= 1'b1;
        case (s_axil_araddr & 8'hFC)
            IG_REG_ID: s_axil_rdata <= IG_ID_MAGIC;
            IG_REG_VERSION: s_axil_rdata <= IG_VERSION;
            IG_REG_CFG_ARRAY: s_axil_rdata <= cfg_array_word;
            IG_REG_CFG_WIDTH: s_axil_rdata <= cfg_width_word;
            IG_REG_STATUS: s_axil_rdata <= status_word;
            IG_REG_MODE: s_axil_rdata <= mode_word;
            IG_REG_BATCH: s_axil_rdata <= batch_word;
            IG_REG_SHAPE: s_axil_rdata <= shape_word;
            default: begin
                if (s_axil_araddr >= IG_COUNTER_BASE && {27'd0, rd_cnt_idx} < NCNT) begin
                    s_axil_rdata <= rd_cnt_off[2] ? snap[rd_cnt_idx[$clog2(NCNT)-1:0]][63:32]
                                                  : snap[rd_cnt_idx[$clog2(NCNT)-1:0]][31:0];
                end else begin
                    s_axil_rdata <= 32'd0;
                end
            end
        endcase
    end

    if (rst) begin
        s_axil_bvalid <= 1'b0;
        s_axil_rvalid <= 1'b0;
        start_req <= 1'b0;
        soft_reset_req <= 1'b0;
        cnt_reset_req <= 1'b0;
        cnt_snap_req <= 1'b0;
        mode_reg <= 2'd0;
        flags_reg <= 8'd0;
        batch_reg <= 16'd1;
        rows_act_reg <= ROWS[7:0];
        cols_act_reg <= COLS[7:0];
    end
end

endmodule

`resetall
