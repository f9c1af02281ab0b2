/*
 * intergrad: ROWS x COLS systolic array with input skew and output de-skew.
 *
 * A beat (left lanes, top lanes, valid) is registered on an array step, then top lane m
 * is delayed m steps into column m and left lane n is delayed n steps into row n, so
 * sample t meets PE(n, m) at step t + 1 + n + m.  Row n's partial sum leaves PE(n, COLS-1)
 * and is delayed ROWS-1-n steps so the whole output vector of sample t is aligned on
 * `out_row` during step t + ROWS + COLS.
 *
 * Zero gating: the registered beat carries zeros in place of a bubble (no valid input) and
 * in the lanes outside the active tile, so every product a PE must not count is zero and
 * the PEs need no valid bit or enable; the partial sums of rows outside the tile are
 * zero (DUAL_MAC=1: those PEs' psum operand is zero) or masked at the output (DUAL_MAC=0).  Abort and reset clear the data links.  A weight load writes the
 * PEs of the latched tile only: the lanes of a weight beat beyond it are ignored.
 *
 * For the MAC counter, all PEs on anti-diagonal d = n + m hold the same sample: one valid
 * bit per diagonal (a ROWS+COLS-1 bit shift register) times the number of active PEs on
 * that diagonal counts the PEs that hold a valid sample inside the tile.  For timing
 * (every register-to-register path within a few LUT levels, see docs/timing.md) both
 * sums are balanced adder trees between registers, not serial chains:
 *   - the tile shape is latched at job start (shape_ld) as row/column enables; the
 *     per-diagonal PE counts diag_k are a registered popcount of them, valid one cycle
 *     later (the first MAC of a job is counted three cycles after shape_ld at the earliest);
 *   - mac_total is registered two cycles after the step it counts: stage 1 sums the valid
 *     diagonals' counts in groups of 4 (and registers the step's enables), stage 2 adds the
 *     groups and doubles for an InterGrad step.  The last MAC of a job is counted at least
 *     one step before its last step, so the MAC counter is final one cycle after the job
 *     ends (before the host can read STATUS and snapshot the counters).
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module intergrad_array #
(
    // PE rows
    parameter ROWS = 8,
    // PE columns
    parameter COLS = 8,
    // input element width
    parameter DATA_W = 16,
    // accumulator width
    parameter ACC_W = 32,
    // two multipliers per PE (1) or one time-shared (0)
    parameter DUAL_MAC = 1
)
(
    input  wire                        clk,
    input  wire                        rst,

    // control
    input  wire                        adv,
    input  wire                        acc_go,
    input  wire                        psum_on,
    input  wire                        mul_h,
    input  wire                        acc_clear,
    input  wire                        acc_save,
    input  wire                        pipe_clear,
    input  wire                        wsel,
    // load every PE's psum weight operand from its active bank (DUAL_MAC=1)
    input  wire                        w_upd,
    // active tile, latched on shape_ld (job start)
    input  wire                        shape_ld,
    input  wire [7:0]                  rows_act,
    input  wire [7:0]                  cols_act,

    // weight load: one row (top lanes) or, transposed, one column (left lanes), into the
    // PEs of the active tile only
    input  wire                        w_we,
    input  wire                        w_bank,
    input  wire                        w_transpose,
    input  wire [7:0]                  w_idx,
    input  wire [ROWS*DATA_W-1:0]      w_left,
    input  wire [COLS*DATA_W-1:0]      w_top,

    // data beat entering on this step
    input  wire [ROWS*DATA_W-1:0]      in_left,
    input  wire [COLS*DATA_W-1:0]      in_top,
    input  wire                        in_valid,

    // aligned output vector, accumulators, MACs this cycle
    output wire [ROWS*ACC_W-1:0]       out_row,
    output wire [ROWS*COLS*ACC_W-1:0]  acc_flat,
    output wire [ROWS*COLS*ACC_W-1:0]  saved_flat,
    output reg  [$clog2(2*ROWS*COLS+1)-1:0] mac_total
);

localparam MAC_W = $clog2(2*ROWS*COLS+1);
// anti-diagonals and the most PEs one of them holds
localparam ND = ROWS + COLS - 1;
localparam KMAX = (ROWS < COLS) ? ROWS : COLS;
localparam KW = $clog2(KMAX + 1);
// adder-tree levels of the diagonal popcount
localparam LOGK = $clog2(KMAX);
// MAC sum: groups of GSZ diagonals in stage 1 (GW bits each; the tree in g_grp is written
// for GSZ = 4), NG groups in stage 2
localparam GSZ = 4;
localparam NG = (ND + GSZ - 1) / GSZ;
localparam LOGNG = $clog2(NG);
localparam GW = $clog2(GSZ * KMAX + 1);

// valid bit of the sample on each anti-diagonal: vd[d] for the PEs with n + m = d
reg [ND-1:0] vd;
wire vd_full = &vd;
// the shape latch (shape_ld) delayed by two and three cycles: the loads of the MAC
// counter's tile count k_all (below), and k_ok
reg shape_qq;
reg shape_qqq;
wire k_ok = !shape_qq;
generate
    if (ND == 1) begin : g_vd_one
        always @(posedge clk) begin
            if (adv) begin
                vd <= in_valid;
            end
            if (rst || pipe_clear) begin
                vd <= 1'b0;
            end
        end
    end else begin : g_vd
        always @(posedge clk) begin
            if (adv) begin
                vd <= {vd[ND-2:0], in_valid};
            end
            if (rst || pipe_clear) begin
                vd <= {ND{1'b0}};
            end
        end
    end
endgenerate

// active tile, latched at job start: rows below rows_act and columns below cols_act
reg [ROWS-1:0]        row_en;
reg [COLS-1:0]        col_en;
reg [ROWS*DATA_W-1:0] left_mask;   // lanes of the active rows
reg [COLS*DATA_W-1:0] top_mask;    // lanes of the active columns
integer i;

always @(posedge clk) begin
    if (shape_ld) begin
        for (i = 0; i < ROWS; i = i + 1) begin
            row_en[i] <= i < rows_act;
            left_mask[i*DATA_W +: DATA_W] <= {DATA_W{i < rows_act}};
        end
        for (i = 0; i < COLS; i = i + 1) begin
            col_en[i] <= i < cols_act;
            top_mask[i*DATA_W +: DATA_W] <= {DATA_W{i < cols_act}};
        end
    end
end

// diag_k[d] = active PEs on diagonal d: popcount of row_en[r] & col_en[d - r] over the
// rows r of the diagonal, registered one cycle behind the shape latch (shape_q) and held
// until the next job (a clock enable: a simulator evaluates the popcounts only then).  The
// popcount is a balanced tree (not a serial chain) of KW-bit adders: level l's node j is the
// sum of nodes 2j and 2j+1 of level l-1 (or node 2j alone when it has no partner); the
// working vector is twice the number of leaves so every select stays in range.
function [KW-1:0] diag_pop;
    input [KMAX-1:0] b;
    reg [2*KMAX*KW-1:0] s;
    integer l, j;
    begin
        s = {2*KMAX*KW{1'b0}};
        for (j = 0; j < KMAX; j = j + 1) begin
            s[j*KW] = b[j];
        end
        for (l = 0; l < LOGK; l = l + 1) begin
            for (j = 0; j < KMAX; j = j + 1) begin
                if (2*j + 1 < ((KMAX + (1 << l) - 1) >> l)) begin
                    s[j*KW +: KW] = s[2*j*KW +: KW] + s[(2*j+1)*KW +: KW];
                end else if (2*j < ((KMAX + (1 << l) - 1) >> l)) begin
                    s[j*KW +: KW] = s[2*j*KW +: KW];
                end
            end
        end
        diag_pop = s[KW-1:0];
    end
endfunction

// the PEs of diagonal d inside the tile: row_en[r] & col_en[d - r] for the rows r of d
function [KMAX-1:0] diag_bits;
    input [ROWS-1:0] re;
    input [COLS-1:0] ce;
    input integer d;
    integer r;
    begin
        diag_bits = {KMAX{1'b0}};
        for (r = 0; r < ROWS; r = r + 1) begin
            if (d - r >= 0 && d - r < COLS) begin
                diag_bits[r - ((d >= COLS) ? d - COLS + 1 : 0)] = re[r] & ce[d - r];
            end
        end
    end
endfunction

// the shape was latched in the cycle before: load diag_k.  Not reset: a shape latched in a
// reset cycle loads its counts too (they follow every shape_ld one cycle later)
reg shape_q;
always @(posedge clk) begin
    shape_q <= shape_ld;
end

wire [ND*KW-1:0] diag_k;
genvar gd, gr;
generate
    for (gd = 0; gd < ND; gd = gd + 1) begin : g_diag
        reg [KW-1:0] k;
        always @(posedge clk) begin
            if (shape_q) begin
                k <= diag_pop(diag_bits(row_en, col_en, gd));
            end
        end
        assign diag_k[gd*KW +: KW] = k;
    end
endgenerate

wire data_clr = rst || pipe_clear;

// registered input beat, zero-gated: zeros for a bubble and outside the active tile
reg [ROWS*DATA_W-1:0] in_left_reg;
reg [COLS*DATA_W-1:0] in_top_reg;

always @(posedge clk) begin
    if (data_clr) begin
        in_left_reg <= {ROWS*DATA_W{1'b0}};
        in_top_reg <= {COLS*DATA_W{1'b0}};
    end else if (adv) begin
        in_left_reg <= in_valid ? (in_left & left_mask) : {ROWS*DATA_W{1'b0}};
        in_top_reg <= in_valid ? (in_top & top_mask) : {COLS*DATA_W{1'b0}};
    end
end

genvar n, m;

// input skew: top lane m delayed m steps, left lane n delayed n steps
generate
    for (m = 0; m < COLS; m = m + 1) begin : g_skew_top
        wire [DATA_W-1:0] v;
        intergrad_delay #(.WIDTH(DATA_W), .DEPTH(m)) u_d (
            .clk(clk), .clr(data_clr), .en(adv),
            .d(in_top_reg[m*DATA_W +: DATA_W]), .q(v));
    end
    for (n = 0; n < ROWS; n = n + 1) begin : g_skew_left
        wire [DATA_W-1:0] h;
        intergrad_delay #(.WIDTH(DATA_W), .DEPTH(n)) u_d (
            .clk(clk), .clr(data_clr), .en(adv),
            .d(in_left_reg[n*DATA_W +: DATA_W]), .q(h));
    end
endgenerate

// PE grid.  Each PE's links are wires of its own generate block; a PE reads its upper and
// left neighbours' outputs by name (plain wires, not array elements, so a simulator can
// alias them instead of copying every output each cycle)
generate
    for (n = 0; n < ROWS; n = n + 1) begin : g_row
        for (m = 0; m < COLS; m = m + 1) begin : g_col
            // the bottom row's v_o and the right column's h_o feed nothing
            /* verilator lint_off UNUSEDSIGNAL */
            wire [DATA_W-1:0] v_o;
            wire [DATA_W-1:0] h_o;
            /* verilator lint_on UNUSEDSIGNAL */
            wire [ACC_W-1:0]  p_o;
            wire [DATA_W-1:0] v_i;
            wire [DATA_W-1:0] h_i;
            wire [ACC_W-1:0]  p_i;
            if (n == 0) begin : g_from_skew
                assign v_i = g_skew_top[m].v;
            end else begin : g_from_above
                assign v_i = g_row[n-1].g_col[m].v_o;
            end
            if (m == 0) begin : g_from_left_edge
                assign h_i = g_skew_left[n].h;
                assign p_i = {ACC_W{1'b0}};
            end else begin : g_from_left
                assign h_i = g_row[n].g_col[m-1].h_o;
                assign p_i = g_row[n].g_col[m-1].p_o;
            end
            intergrad_pe #(.DATA_W(DATA_W), .ACC_W(ACC_W), .DUAL_MAC(DUAL_MAC),
                           .ROW(n), .COL(m)) u_pe (
                .clk(clk), .clr(data_clr), .w_clr(rst),
                .adv(adv), .acc_go(acc_go), .psum_on(psum_on), .mul_h(mul_h),
                .acc_clear(acc_clear), .acc_save(acc_save),
                .wsel(wsel), .w_upd(w_upd),
                .w_we(w_we), .w_bank(w_bank),
                // the tile test (row_en[n] && col_en[m]) is inside the PE's w_we branch: as
                // a per-PE enable wire a simulator evaluates all of them every cycle
                .w_row_en(row_en[n]), .w_col_en(col_en[m]),
                .w_transpose(w_transpose), .w_idx(w_idx),
                .w_left(w_left[n*DATA_W +: DATA_W]), .w_top(w_top[m*DATA_W +: DATA_W]),
                .v_in(v_i),
                .v_out(v_o),
                .h_in(h_i), .h_out(h_o),
                .p_in(p_i), .p_out(p_o),
                .acc_out(acc_flat[(n*COLS+m)*ACC_W +: ACC_W]),
                .acc_saved(saved_flat[(n*COLS+m)*ACC_W +: ACC_W]));
        end
    end
endgenerate

// output de-skew; rows outside the active tile output zero: with DUAL_MAC=1 their PEs hold a
// zero psum operand (w_op, gated by w_row_en at w_upd), so their partial sums are zero from
// COLS steps after the job's first step on, and reach the output (ROWS-1-n steps later) before
// the job's first result (step ROWS+COLS); with DUAL_MAC=0 they are masked here
generate
    for (n = 0; n < ROWS; n = n + 1) begin : g_deskew
        wire [ACC_W-1:0] q;
        intergrad_delay #(.WIDTH(ACC_W), .DEPTH(ROWS-1-n)) u_d (
            .clk(clk), .clr(1'b0), .en(adv),
            .d(g_row[n].g_col[COLS-1].p_o), .q(q));
        if (DUAL_MAC) begin : g_nomask
            assign out_row[n*ACC_W +: ACC_W] = q;
        end else begin : g_mask
            assign out_row[n*ACC_W +: ACC_W] = row_en[n] ? q : {ACC_W{1'b0}};
        end
    end
endgenerate

// MACs performed on a step: every PE holding a valid sample inside the active tile does
// one psum MAC on an array step (WS, IG) and one accumulate MAC on an accumulate cycle
// (OS, IG); those PEs are the active PEs of the valid diagonals.  Two registered stages
// (see the header): mac_total counts the step two cycles before.
reg mac_p;     // the step two stages back did psum MACs
reg mac_a;     // ... and accumulate MACs
generate
    for (gd = 0; gd < NG; gd = gd + 1) begin : g_grp
        wire [GSZ*KW-1:0] t;
        wire [GSZ*KW-1:0] k4;
        reg  [GW-1:0]     s;
        for (gr = 0; gr < GSZ; gr = gr + 1) begin : g_t
            if (gd*GSZ + gr < ND) begin : g_on
                assign t[gr*KW +: KW] = vd[gd*GSZ + gr] ? diag_k[(gd*GSZ + gr)*KW +: KW]
                                                        : {KW{1'b0}};
                assign k4[gr*KW +: KW] = diag_k[(gd*GSZ + gr)*KW +: KW];
            end else begin : g_off
                assign t[gr*KW +: KW] = {KW{1'b0}};
                assign k4[gr*KW +: KW] = {KW{1'b0}};
            end
        end
        // stage 1: (t0 + t1) + (t2 + t3), GW bits; not loaded when every diagonal is
        // valid (stage 2 then takes the tile's whole count, k_all, and not these sums)
        wire [GW-1:0] t01 = {{(GW-KW){1'b0}}, t[0 +: KW]} + {{(GW-KW){1'b0}}, t[KW +: KW]};
        wire [GW-1:0] t23 = {{(GW-KW){1'b0}}, t[2*KW +: KW]} + {{(GW-KW){1'b0}}, t[3*KW +: KW]};
        always @(posedge clk) begin
            if (!(vd_full && k_ok)) begin
                s <= t01 + t23;
            end
            if (rst) begin
                s <= {GW{1'b0}};
            end
        end
        // the group's diagonals' counts, all of them (a term of k_all), registered one
        // cycle after diag_k loads (shape_qq)
        wire [GW-1:0] k01 = {{(GW-KW){1'b0}}, k4[0 +: KW]} + {{(GW-KW){1'b0}}, k4[KW +: KW]};
        wire [GW-1:0] k23 = {{(GW-KW){1'b0}}, k4[2*KW +: KW]} + {{(GW-KW){1'b0}}, k4[3*KW +: KW]};
        reg  [GW-1:0] ka;
        always @(posedge clk) begin
            if (shape_qq) begin
                ka <= k01 + k23;
            end
        end
    end
endgenerate

// stage 2: a balanced adder tree (not a serial chain) over the NG group sums.  The working
// vector is twice the number of terms so every select stays in range.
function [MAC_W-1:0] groups_sum;
    input [NG*GW-1:0] g;
    reg [2*NG*MAC_W-1:0] s;
    integer l, j;
    begin
        s = {2*NG*MAC_W{1'b0}};
        for (j = 0; j < NG; j = j + 1) begin
            s[j*MAC_W +: GW] = g[j*GW +: GW];
        end
        for (l = 0; l < LOGNG; l = l + 1) begin
            for (j = 0; j < NG; j = j + 1) begin
                if (2*j + 1 < ((NG + (1 << l) - 1) >> l)) begin
                    s[j*MAC_W +: MAC_W] = s[2*j*MAC_W +: MAC_W] + s[(2*j+1)*MAC_W +: MAC_W];
                end else if (2*j < ((NG + (1 << l) - 1) >> l)) begin
                    s[j*MAC_W +: MAC_W] = s[2*j*MAC_W +: MAC_W];
                end
            end
        end
        groups_sum = s[MAC_W-1:0];
    end
endfunction

// the groups' sums of the valid diagonals (grp) and of all diagonals (grp_all, k_all's)
wire [NG*GW-1:0] grp;
wire [NG*GW-1:0] grp_all;
generate
    for (gd = 0; gd < NG; gd = gd + 1) begin : g_grp_cat
        assign grp[gd*GW +: GW] = g_grp[gd].s;
        assign grp_all[gd*GW +: GW] = g_grp[gd].ka;
    end
endgenerate

// k_all = the tile's active PEs, the sum of every diagonal's count: what the valid
// diagonals' counts sum to when every diagonal is valid (a long job's steady state).
// Two registered stages after diag_k, as the group sums: the groups' terms (ka) one cycle
// after diag_k loads (shape_qq), their sum two cycles after (shape_qqq).  Not reset, as
// diag_k.  So k_all in cycle x + 1 is the sum of diag_k in cycle x unless diag_k loaded at
// the end of cycle x - 1 (shape_qq high in cycle x): k_ok.  (diag_k loaded at the end of
// cycle u is in ka from u + 2 and in k_all from u + 3; diag_k holds from u + 1 on.)
reg [MAC_W-1:0] k_all;
always @(posedge clk) begin
    shape_qq <= shape_q;
    shape_qqq <= shape_qq;
    if (shape_qqq) begin
        k_all <= groups_sum(grp_all);
    end
end

// full_q: the group sums were not loaded in the cycle before because every diagonal was
// valid then and k_all was current; the step's count is k_all (equal to the group sums'
// total in that case)
reg full_q;
reg [MAC_W-1:0] n_fire;   // blocking temporary: the active PEs of the valid diagonals

// n_fire is a temporary of this block (assigned before it is read, in every cycle): a
// simulator then evaluates the group sums' tree only in the cycles that use it
/* verilator lint_off BLKSEQ */
always @(posedge clk) begin
    mac_p <= adv && psum_on;
    mac_a <= acc_go;
    full_q <= vd_full && k_ok;
    if (full_q) begin
        n_fire = k_all;
    end else begin
        n_fire = groups_sum(grp);
    end
    mac_total <= (mac_p && mac_a) ? {n_fire[MAC_W-2:0], 1'b0} :
                 (mac_p || mac_a) ? n_fire : {MAC_W{1'b0}};
    if (rst) begin
        mac_p <= 1'b0;
        mac_a <= 1'b0;
        full_q <= 1'b0;
        mac_total <= {MAC_W{1'b0}};
    end
end
/* verilator lint_on BLKSEQ */

endmodule

`resetall
