/*
 * intergrad: configurable processing element (WS / OS / InterGrad).
 *
 * PE(n, m) holds two banks of the stationary value S[n][m] and one accumulator.
 * Vertical data v flows down, horizontal data h flows right, the partial sum p flows
 * right.  On an array step (adv):
 *   p_out <= p_in + (psum_on ? w * v_in : 0)              (WS, InterGrad)
 * and on an accumulate cycle (acc_go):
 *   acc   <= acc + h_in * v_in                            (OS, InterGrad)
 * The PE has no valid bit or tile enable of its own: the array feeds zeros into the data
 * links for bubbles, flush steps and lanes outside the active tile (zero gating), so a
 * product that must not count is zero; the array also masks the partial sums of inactive
 * rows at its output.  The data links are cleared by `clr` (reset, abort, soft reset) so
 * nothing stale or undefined reaches a product; the weights only by `w_clr` (hard reset):
 * an abort or soft reset leaves both banks as they are.
 * Timing: with DUAL_MAC = 1 the psum multiplier's weight operand is a register, w_op, loaded
 * on w_upd with the active bank gated to zero while psum_on is low or the PE's row is outside
 * the active tile (w_row_en low: that row's partial sums are then zero, so the array needs
 * no output mask), instead of a multiplexer after the adder: the psum MAC is one DSP48E1 with its B input register (w_op), multiply,
 * post-add of p_in and P register, and no LUT in front of it.  The controller pulses w_upd
 * in the cycle after every change of the active bank, of its contents or of psum_on, before
 * the next sample reaches a PE (the PE testbench checks the register as documented here).
 * With DUAL_MAC = 0 one multiplier serves both; the controller then issues the
 * accumulate in a separate cycle and selects the operand with mul_h.
 * Arithmetic is two's complement and wraps modulo 2^ACC_W.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module intergrad_pe #
(
    // input element width (signed)
    parameter DATA_W = 16,
    // accumulator / partial-sum width (signed), at least 2*DATA_W
    parameter ACC_W = 32,
    // 1: two multipliers (psum and acc MAC in one cycle); 0: one time-shared multiplier
    parameter DUAL_MAC = 1,
    // this PE's row and column in the array (selects the weight-load beats it takes)
    parameter ROW = 0,
    parameter COL = 0
)
(
    input  wire                     clk,
    // clear the data links (reset, abort, soft reset)
    input  wire                     clr,
    // clear the weights (reset)
    input  wire                     w_clr,

    // control, broadcast to all PEs
    input  wire                     adv,        // array step: shift data, update psum
    input  wire                     acc_go,     // accumulate this cycle
    input  wire                     psum_on,    // psum term enabled (WS, IG)
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire                     mul_h,      // DUAL_MAC=0: multiplier takes h (acc) not w
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire                     acc_clear,  // zero the accumulator
    input  wire                     acc_save,   // copy the accumulator to the drain buffer
    input  wire                     wsel,       // active weight bank
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire                     w_upd,      // DUAL_MAC=1: load w_op from the active bank
    /* verilator lint_on UNUSEDSIGNAL */

    // weight load into one bank: beat w_idx carries row w_idx of S in w_top (or, transposed,
    // column w_idx of S in w_left); this PE takes its lane when the index is its row (column)
    input  wire                     w_we,
    input  wire                     w_row_en,   // this PE's row is inside the active tile
                                                // (DUAL_MAC=1: also gates w_op, below)
    input  wire                     w_col_en,   // this PE's column is inside the active tile
    input  wire                     w_bank,
    input  wire                     w_transpose,
    input  wire [7:0]               w_idx,
    input  wire [DATA_W-1:0]        w_left,
    input  wire [DATA_W-1:0]        w_top,

    // vertical link
    input  wire [DATA_W-1:0]        v_in,
    output reg  [DATA_W-1:0]        v_out,

    // horizontal data and partial-sum links
    input  wire [DATA_W-1:0]        h_in,
    output reg  [DATA_W-1:0]        h_out,
    input  wire [ACC_W-1:0]         p_in,
    output reg  [ACC_W-1:0]         p_out,

    // accumulator and its saved copy (drain buffer)
    output wire [ACC_W-1:0]         acc_out,
    output reg  [ACC_W-1:0]         acc_saved
);

localparam PROD_W = 2 * DATA_W;

initial begin
    if (ACC_W < PROD_W) begin
        $error("intergrad_pe: ACC_W (%0d) must be >= 2*DATA_W (%0d)", ACC_W, PROD_W);
        $finish;
    end
end

reg [DATA_W-1:0] w0;
reg [DATA_W-1:0] w1;
reg [ACC_W-1:0]  acc;

wire [DATA_W-1:0] w_act = wsel ? w1 : w0;

wire signed [PROD_W-1:0] prod_p;  // product for the partial sum
wire signed [PROD_W-1:0] prod_a;  // product for the accumulator
wire [ACC_W-1:0] psum_term;
wire [ACC_W-1:0] acc_term;

generate
    if (DUAL_MAC) begin : g_dual
        // the psum multiplier's weight operand, registered: the active bank, zero unless
        // the psum term is on (the bank select and this gate are the LUT before it)
        reg [DATA_W-1:0] w_op;
        always @(posedge clk) begin
            if (w_upd) begin
                w_op <= (psum_on && w_row_en) ? w_act : {DATA_W{1'b0}};
            end
            if (w_clr) begin
                w_op <= {DATA_W{1'b0}};
            end
        end
        assign prod_p = $signed(w_op) * $signed(v_in);
        assign prod_a = $signed(h_in) * $signed(v_in);
    end else begin : g_single
        wire [DATA_W-1:0] op_a = mul_h ? h_in : w_act;
        assign prod_p = $signed(op_a) * $signed(v_in);
        assign prod_a = prod_p;
    end
    if (ACC_W > PROD_W) begin : g_ext
        assign psum_term = {{(ACC_W-PROD_W){prod_p[PROD_W-1]}}, prod_p};
        assign acc_term = {{(ACC_W-PROD_W){prod_a[PROD_W-1]}}, prod_a};
    end else begin : g_noext
        assign psum_term = prod_p;
        assign acc_term = prod_a;
    end
endgenerate

assign acc_out = acc;

always @(posedge clk) begin
    if (w_we) begin
        if (w_row_en && w_col_en && (w_transpose ? (w_idx == COL[7:0]) : (w_idx == ROW[7:0]))) begin
            if (w_bank) begin
                w1 <= w_transpose ? w_left : w_top;
            end else begin
                w0 <= w_transpose ? w_left : w_top;
            end
        end
    end
    if (w_clr) begin
        w0 <= {DATA_W{1'b0}};
        w1 <= {DATA_W{1'b0}};
    end
end

// The accumulate adder as a wire of its own.  For a simulator only: the metacomment keeps
// the wire from being folded back into the register's block, where `acc <= acc + x` would
// read the register it writes, and a Verilated model then keeps a shadow copy of every
// accumulator, copied in and out on every clock edge (about 250 of the 8x8 array's
// instructions per cycle).  Synthesis ignores it: the same adder and register.
wire [ACC_W-1:0] acc_sum /*verilator public_flat_rd*/;
assign acc_sum = acc + acc_term;
always @(posedge clk) begin
    if (acc_clear) begin
        acc <= {ACC_W{1'b0}};
    end else if (acc_go) begin
        acc <= acc_sum;
    end
end

always @(posedge clk) begin
    if (acc_save) begin
        acc_saved <= acc;
    end
end

generate
    if (DUAL_MAC) begin : g_psum_dual
        // psum_term is zero when the psum term is off (w_op above)
        always @(posedge clk) begin
            if (adv) begin
                p_out <= p_in + psum_term;
            end
        end
    end else begin : g_psum_single
        always @(posedge clk) begin
            if (adv) begin
                p_out <= psum_on ? p_in + psum_term : p_in;
            end
        end
    end
endgenerate

always @(posedge clk) begin
    if (clr) begin
        v_out <= {DATA_W{1'b0}};
        h_out <= {DATA_W{1'b0}};
    end else if (adv) begin
        v_out <= v_in;
        h_out <= h_in;
    end
end

endmodule

`resetall
