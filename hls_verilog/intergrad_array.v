/*
 * intergrad: ROWS x COLS systolic array with input skew and output de-skew.
 *
 * A beat (left lanes, top lanes, valid) is registered on an array step, then top lane m
 * is delayed m steps into column m and left lane n is delayed n steps into row n, so
 * sample t meets PE(n, m) at step t + 1 + n + m.  Row n's partial sum leaves PE(n, COLS-1)
 * and is delayed ROWS-1-n steps so the whole output vector of sample t is aligned on
 * `out_row` during step t + ROWS + COLS.
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
    input  wire [7:0]                  rows_act,
    input  wire [7:0]                  cols_act,

    // weight load: one row (top lanes) or, transposed, one column (left lanes)
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

// registered input beat
reg [ROWS*DATA_W-1:0] in_left_reg;
reg [COLS*DATA_W-1:0] in_top_reg;
reg                   in_valid_reg;

always @(posedge clk) begin
    if (adv) begin
        in_left_reg <= in_left;
        in_top_reg <= in_top;
        in_valid_reg <= in_valid;
    end
    if (rst || pipe_clear) begin
        in_valid_reg <= 1'b0;
    end
end

wire [ROWS*COLS-1:0] fire;  // PE(n, m) holds valid data inside the active tile

genvar n, m;

// active tile: row n / column m take part when below ROWS_ACT / COLS_ACT
wire [ROWS-1:0] row_en;
wire [COLS-1:0] col_en;
generate
    for (n = 0; n < ROWS; n = n + 1) begin : g_row_en
        assign row_en[n] = n < rows_act;
    end
    for (m = 0; m < COLS; m = m + 1) begin : g_col_en
        assign col_en[m] = m < cols_act;
    end
endgenerate

// input skew: top lane m delayed m steps (with its valid bit), left lane n delayed n steps
generate
    for (m = 0; m < COLS; m = m + 1) begin : g_skew_top
        wire [DATA_W-1:0] v;
        wire              vv;
        intergrad_delay #(.WIDTH(DATA_W), .DEPTH(m)) u_d (
            .clk(clk), .clr(1'b0), .en(adv),
            .d(in_top_reg[m*DATA_W +: DATA_W]), .q(v));
        intergrad_delay #(.WIDTH(1), .DEPTH(m)) u_v (
            .clk(clk), .clr(rst | pipe_clear), .en(adv),
            .d(in_valid_reg), .q(vv));
    end
    for (n = 0; n < ROWS; n = n + 1) begin : g_skew_left
        wire [DATA_W-1:0] h;
        intergrad_delay #(.WIDTH(DATA_W), .DEPTH(n)) u_d (
            .clk(clk), .clr(1'b0), .en(adv),
            .d(in_left_reg[n*DATA_W +: DATA_W]), .q(h));
    end
endgenerate

// PE grid.  Each PE's links are wires of its own generate block; a PE reads its upper and
// left neighbours' outputs by name (plain wires, not array elements, so a simulator can
// alias them instead of copying every output each cycle)
generate
    for (n = 0; n < ROWS; n = n + 1) begin : g_row
        for (m = 0; m < COLS; m = m + 1) begin : g_col
            // the bottom row's v_o/vv_o and the right column's h_o feed nothing
            /* verilator lint_off UNUSEDSIGNAL */
            wire [DATA_W-1:0] v_o;
            wire              vv_o;
            wire [DATA_W-1:0] h_o;
            /* verilator lint_on UNUSEDSIGNAL */
            wire [ACC_W-1:0]  p_o;
            wire [DATA_W-1:0] v_i;
            wire              vv_i;
            wire [DATA_W-1:0] h_i;
            wire [ACC_W-1:0]  p_i;
            if (n == 0) begin : g_from_skew
                assign v_i = g_skew_top[m].v;
                assign vv_i = g_skew_top[m].vv;
            end else begin : g_from_above
                assign v_i = g_row[n-1].g_col[m].v_o;
                assign vv_i = g_row[n-1].g_col[m].vv_o;
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
                .clk(clk), .rst(rst),
                .adv(adv), .acc_go(acc_go), .psum_on(psum_on), .mul_h(mul_h),
                .en(row_en[n] & col_en[m]), .acc_clear(acc_clear), .acc_save(acc_save),
                .pipe_clear(pipe_clear),
                .wsel(wsel),
                .w_we(w_we), .w_bank(w_bank), .w_transpose(w_transpose), .w_idx(w_idx),
                .w_left(w_left[n*DATA_W +: DATA_W]), .w_top(w_top[m*DATA_W +: DATA_W]),
                .v_in(v_i), .v_in_valid(vv_i),
                .v_out(v_o), .v_out_valid(vv_o),
                .h_in(h_i), .h_out(h_o),
                .p_in(p_i), .p_out(p_o),
                .acc_out(acc_flat[(n*COLS+m)*ACC_W +: ACC_W]),
                .acc_saved(saved_flat[(n*COLS+m)*ACC_W +: ACC_W]),
                .fire_out(fire[n*COLS+m]));
        end
    end
endgenerate

// output de-skew
generate
    for (n = 0; n < ROWS; n = n + 1) begin : g_deskew
        intergrad_delay #(.WIDTH(ACC_W), .DEPTH(ROWS-1-n)) u_d (
            .clk(clk), .clr(1'b0), .en(adv),
            .d(g_row[n].g_col[COLS-1].p_o), .q(out_row[n*ACC_W +: ACC_W]));
    end
endgenerate

// MACs performed this cycle: every firing PE does one psum MAC on an array step (WS, IG)
// and one accumulate MAC on an accumulate cycle (OS, IG)
function [MAC_W-1:0] popcount;
    input [ROWS*COLS-1:0] bits;
    integer b;
    begin
        popcount = {MAC_W{1'b0}};
        for (b = 0; b < ROWS*COLS; b = b + 1) begin
            popcount = popcount + {{(MAC_W-1){1'b0}}, bits[b]};
        end
    end
endfunction

wire [MAC_W-1:0] n_fire = popcount(fire);
always @* begin
    mac_total = ((adv && psum_on) ? n_fire : {MAC_W{1'b0}}) +
                (acc_go ? n_fire : {MAC_W{1'b0}});
end

endmodule

`resetall
