/*
 * intergrad: AXI4-Lite slave and register file of the core.
 *
 * Modelled on verilog-axi's axil_reg_if_wr / axil_reg_if_rd (alexforencich): every
 * ready/valid output is a register; AW and W are captured independently (either order,
 * any skew), the write is applied in the cycle after both halves are held (`wr_en`) and
 * BVALID rises with it; AR is captured, the read word is decoded in the next cycle and
 * RVALID rises with it.  BVALID and RVALID are held until BREADY / RREADY.  While a
 * response waits, the next AW / W / AR may already be captured into the holding registers
 * (legal AXI4-Lite): up to two requests per direction can be in flight, and the second is
 * applied or decoded only after the first response has been taken.
 *
 * Ordering: a write is applied at the clock edge that ends its `wr_en` cycle; a read whose
 * AR handshake is at that edge or later decodes in a later cycle, so it sees the write
 * (CNT_SNAPSHOT included: the snapshot is taken at that same edge, see intergrad_top).
 * Two writes are applied at least two cycles apart (a write's halves are accepted again
 * only after it has been applied).
 *
 * The register file (MODE, BATCH, SHAPE) lives here; CTRL writes give one-cycle strobes in
 * the cycle the write is applied.  Read words are packed from the generated IG_* field
 * constants of intergrad_regs.vh (host/intergrad/spec.py).
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module intergrad_axil_regs #
(
    // PE rows, columns, element and accumulator widths, PE variant (reported in CFG_*)
    parameter ROWS = 8,
    parameter COLS = 8,
    parameter DATA_W = 16,
    parameter ACC_W = 32,
    parameter DUAL_MAC = 1,
    // number of 64-bit counters in the snapshot
    parameter NCNT = 10
)
(
    input  wire                 clk,
    input  wire                 rst,

    // AXI4-Lite slave
    input  wire [7:0]           s_axil_awaddr,
    input  wire                 s_axil_awvalid,
    output reg                  s_axil_awready,
    input  wire [31:0]          s_axil_wdata,
    input  wire [3:0]           s_axil_wstrb,
    input  wire                 s_axil_wvalid,
    output reg                  s_axil_wready,
    output wire [1:0]           s_axil_bresp,
    output reg                  s_axil_bvalid,
    input  wire                 s_axil_bready,
    input  wire [7:0]           s_axil_araddr,
    input  wire                 s_axil_arvalid,
    output reg                  s_axil_arready,
    output reg  [31:0]          s_axil_rdata,
    output wire [1:0]           s_axil_rresp,
    output reg                  s_axil_rvalid,
    input  wire                 s_axil_rready,

    // register file
    output reg  [1:0]           mode,
    output reg  [7:0]           flags,
    output reg  [15:0]          batch,
    output reg  [7:0]           rows_act,
    output reg  [7:0]           cols_act,

    // CTRL strobes, one cycle, in the cycle the CTRL write is applied
    output reg                  fields_upd,     // the job fields changed (or reset) at the last edge
    output reg                  ctrl_start,     // START or QUEUE
    output reg                  ctrl_queue,
    output reg                  ctrl_soft_reset,
    output reg                  ctrl_cnt_reset,
    output reg                  ctrl_cnt_snapshot,

    // status of the core (STATUS fields)
    input  wire                 st_busy,
    input  wire                 st_done,
    input  wire                 st_error,
    input  wire                 st_preloaded,
    input  wire                 st_saved,
    input  wire                 st_computing,
    input  wire                 st_out_pending,
    input  wire [7:0]           st_err_cause,
    input  wire [15:0]          st_queue_job,

    // counter snapshot, counter i in bits [64*i +: 64]
    input  wire [NCNT*64-1:0]   snap_flat
);

`include "intergrad_regs.vh"

localparam CIDX_W = $clog2(NCNT);

// ---------------------------------------------------------------- write channel
// A holding register is full while its READY output is low: the READY and VALID outputs
// are the flops themselves (no logic between a flop and a port).
reg [7:0]  awaddr_reg, awaddr_next;
reg        awvalid_next;
reg [31:0] wdata_reg, wdata_next;
reg [3:0]  wstrb_reg, wstrb_next;
reg        wvalid_next;
reg        bvalid_next;
reg        wr_en_reg, wr_en_next;
reg        wr_ctrl_next;

wire awvalid_reg = !s_axil_awready;
wire wvalid_reg = !s_axil_wready;
wire bvalid_reg = s_axil_bvalid;

assign s_axil_bresp = 2'b00;

wire [7:0] wr_word = awaddr_reg & 8'hFC;
integer wb;

// next values as blocking temporaries of the clocked block (combinational logic that a
// simulator evaluates once per clock edge, not again on every input change).  The block
// first applies the held write to the register file, then reloads the holding registers:
// every read of a holding register comes before its update.
/* verilator lint_off BLKSEQ */
always @(posedge clk) begin
    // ------------------------------------------------ register file
    // a write takes the bytes enabled by wstrb (every writable field lies within whole
    // bytes, which spec.py checks)
    fields_upd <= wr_en_reg || rst;
    if (wr_en_reg) begin
        case (wr_word)
            IG_REG_MODE: begin
                if (wstrb_reg[IG_MODE_MODE_LSB/8]) begin
                    mode <= wdata_reg[IG_MODE_MODE_LSB +: IG_MODE_MODE_W];
                end
                if (wstrb_reg[IG_MODE_FLAGS_LSB/8]) begin
                    flags <= wdata_reg[IG_MODE_FLAGS_LSB +: IG_MODE_FLAGS_W];
                end
            end
            IG_REG_BATCH: begin
                for (wb = 0; wb < IG_BATCH_BATCH_W/8; wb = wb + 1) begin
                    if (wstrb_reg[IG_BATCH_BATCH_LSB/8 + wb]) begin
                        batch[wb*8 +: 8] <= wdata_reg[IG_BATCH_BATCH_LSB + wb*8 +: 8];
                    end
                end
            end
            IG_REG_SHAPE: begin
                if (wstrb_reg[IG_SHAPE_ROWS_ACT_LSB/8]) begin
                    rows_act <= wdata_reg[IG_SHAPE_ROWS_ACT_LSB +: IG_SHAPE_ROWS_ACT_W];
                end
                if (wstrb_reg[IG_SHAPE_COLS_ACT_LSB/8]) begin
                    cols_act <= wdata_reg[IG_SHAPE_COLS_ACT_LSB +: IG_SHAPE_COLS_ACT_W];
                end
            end
            default: begin
            end
        endcase
    end

    // ------------------------------------------------ AW / W / B
    // an idle channel (nothing held, no response, no request) keeps every register: its
    // valid bits are low and stay low, and the address and data registers are read only
    // with them (a clock enable in hardware; a simulator skips the logic).  The CTRL
    // strobes are low in a cycle after an idle one (a strobe is high only with wr_en_reg,
    // and the cycle after wr_en_reg has BVALID high, so the channel is not idle then).
    if (awvalid_reg || wvalid_reg || bvalid_reg || s_axil_awvalid || s_axil_wvalid) begin
        awaddr_next = awaddr_reg;
        awvalid_next = awvalid_reg;
        wdata_next = wdata_reg;
        wstrb_next = wstrb_reg;
        wvalid_next = wvalid_reg;
        bvalid_next = bvalid_reg && !s_axil_bready;

        // the held write is applied in this cycle: free both halves, respond
        if (wr_en_reg) begin
            awvalid_next = 1'b0;
            wvalid_next = 1'b0;
            bvalid_next = 1'b1;
        end
        // capture each half independently while its holding register is free
        if (!awvalid_reg) begin
            awaddr_next = s_axil_awaddr;
            awvalid_next = s_axil_awvalid;
        end
        if (!wvalid_reg) begin
            wdata_next = s_axil_wdata;
            wstrb_next = s_axil_wstrb;
            wvalid_next = s_axil_wvalid;
        end

        wr_en_next = awvalid_next && wvalid_next && !bvalid_next;
        // the CTRL strobes of the write applied in the next cycle, registered
        wr_ctrl_next = wr_en_next && (awaddr_next & 8'hFC) == IG_REG_CTRL && wstrb_next[0];

        awaddr_reg <= awaddr_next;
        s_axil_awready <= !awvalid_next;
        wdata_reg <= wdata_next;
        wstrb_reg <= wstrb_next;
        s_axil_wready <= !wvalid_next;
        s_axil_bvalid <= bvalid_next;
        wr_en_reg <= wr_en_next;
        ctrl_start <= wr_ctrl_next
            && (wdata_next[IG_CTRL_START_LSB] || wdata_next[IG_CTRL_QUEUE_LSB]);
        ctrl_queue <= wr_ctrl_next && wdata_next[IG_CTRL_QUEUE_LSB];
        ctrl_soft_reset <= wr_ctrl_next && wdata_next[IG_CTRL_SOFT_RESET_LSB];
        ctrl_cnt_reset <= wr_ctrl_next && wdata_next[IG_CTRL_CNT_RESET_LSB];
        ctrl_cnt_snapshot <= wr_ctrl_next && wdata_next[IG_CTRL_CNT_SNAPSHOT_LSB];
    end

    if (rst) begin
        s_axil_awready <= 1'b1;
        s_axil_wready <= 1'b1;
        s_axil_bvalid <= 1'b0;
        wr_en_reg <= 1'b0;
        ctrl_start <= 1'b0;
        ctrl_queue <= 1'b0;
        ctrl_soft_reset <= 1'b0;
        ctrl_cnt_reset <= 1'b0;
        ctrl_cnt_snapshot <= 1'b0;
        mode <= 2'd0;
        flags <= 8'd0;
        batch <= 16'd1;
        rows_act <= ROWS[7:0];
        cols_act <= COLS[7:0];
    end
end
/* verilator lint_on BLKSEQ */

// ---------------------------------------------------------------- read channel
// as the write channel: ARREADY low while the address is held, RVALID and RDATA the flops
reg [7:0]  araddr_reg, araddr_next;
reg        arvalid_next;
reg        rvalid_next;
reg        rd_en_reg, rd_en_next;

wire arvalid_reg = !s_axil_arready;
wire rvalid_reg = s_axil_rvalid;

assign s_axil_rresp = 2'b00;

// the word at a read address, packed from the generated field constants; evaluated only in
// the cycle that answers a read (the clocked branch below)
function [31:0] read_word;
    input [7:0] addr;
    reg [31:0] w;
    /* verilator lint_off UNUSEDSIGNAL */
    reg [7:0] cnt_off;   // bits [1:0]: the byte within the word
    /* verilator lint_on UNUSEDSIGNAL */
    reg [4:0] cnt_idx;
    begin
        w = 32'd0;
        cnt_off = addr - IG_COUNTER_BASE;
        cnt_idx = cnt_off[7:3];
        case (addr & 8'hFC)
            IG_REG_ID: w = IG_ID_MAGIC;
            IG_REG_VERSION: w = IG_VERSION;
            IG_REG_CFG_ARRAY: begin
                w[IG_CFG_ARRAY_ROWS_LSB +: IG_CFG_ARRAY_ROWS_W] = ROWS[IG_CFG_ARRAY_ROWS_W-1:0];
                w[IG_CFG_ARRAY_COLS_LSB +: IG_CFG_ARRAY_COLS_W] = COLS[IG_CFG_ARRAY_COLS_W-1:0];
                w[IG_CFG_ARRAY_DUAL_MAC_LSB] = DUAL_MAC[0];
            end
            IG_REG_CFG_WIDTH: begin
                w[IG_CFG_WIDTH_DATA_W_LSB +: IG_CFG_WIDTH_DATA_W_W] = DATA_W[IG_CFG_WIDTH_DATA_W_W-1:0];
                w[IG_CFG_WIDTH_ACC_W_LSB +: IG_CFG_WIDTH_ACC_W_W] = ACC_W[IG_CFG_WIDTH_ACC_W_W-1:0];
            end
            IG_REG_STATUS: begin
                w[IG_STATUS_BUSY_LSB] = st_busy;
                w[IG_STATUS_DONE_LSB] = st_done;
                w[IG_STATUS_ERROR_LSB] = st_error;
                w[IG_STATUS_PRELOADED_LSB] = st_preloaded;
                w[IG_STATUS_SAVED_LSB] = st_saved;
                w[IG_STATUS_COMPUTING_LSB] = st_computing;
                w[IG_STATUS_OUT_PENDING_LSB] = st_out_pending;
                w[IG_STATUS_ERR_CAUSE_LSB +: IG_STATUS_ERR_CAUSE_W] = st_err_cause;
            end
            IG_REG_MODE: begin
                w[IG_MODE_MODE_LSB +: IG_MODE_MODE_W] = mode;
                w[IG_MODE_FLAGS_LSB +: IG_MODE_FLAGS_W] = flags;
            end
            IG_REG_BATCH: w[IG_BATCH_BATCH_LSB +: IG_BATCH_BATCH_W] = batch;
            IG_REG_SHAPE: begin
                w[IG_SHAPE_ROWS_ACT_LSB +: IG_SHAPE_ROWS_ACT_W] = rows_act;
                w[IG_SHAPE_COLS_ACT_LSB +: IG_SHAPE_COLS_ACT_W] = cols_act;
            end
            IG_REG_QUEUE: w[IG_QUEUE_JOB_LSB +: IG_QUEUE_JOB_W] = st_queue_job;
            default: begin
                // the low / high half of counter (addr - COUNTER_BASE) / 8
                if (addr >= IG_COUNTER_BASE && {27'd0, cnt_idx} < NCNT) begin
                    w = snap_flat[{cnt_idx[CIDX_W-1:0], cnt_off[2], 5'd0} +: 32];
                end
            end
        endcase
        read_word = w;
    end
endfunction

/* verilator lint_off BLKSEQ */
always @(posedge clk) begin
    // an idle channel keeps every register, as the write channel above
    if (arvalid_reg || rvalid_reg || s_axil_arvalid) begin
        // RDATA is loaded with the answer and held until the next one (read before the
        // address register is reloaded)
        if (rd_en_reg) begin
            s_axil_rdata <= read_word(araddr_reg);
        end

        araddr_next = araddr_reg;
        arvalid_next = arvalid_reg;
        rvalid_next = rvalid_reg && !s_axil_rready;

        // the held address is decoded in this cycle: answer, free the address register
        if (rd_en_reg) begin
            arvalid_next = 1'b0;
            rvalid_next = 1'b1;
        end
        if (!arvalid_reg) begin
            araddr_next = s_axil_araddr;
            arvalid_next = s_axil_arvalid;
        end

        rd_en_next = arvalid_next && !rvalid_next;

        araddr_reg <= araddr_next;
        s_axil_arready <= !arvalid_next;
        s_axil_rvalid <= rvalid_next;
        rd_en_reg <= rd_en_next;
    end

    if (rst) begin
        s_axil_arready <= 1'b1;
        s_axil_rvalid <= 1'b0;
        rd_en_reg <= 1'b0;
    end
end
/* verilator lint_on BLKSEQ */

endmodule

`resetall
