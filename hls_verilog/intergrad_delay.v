/*
 * intergrad: DEPTH-stage shift register that advances on `en` (DEPTH may be 0).
 * Used for the input skew and the output de-skew of the systolic array.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module intergrad_delay #
(
    // bits per stage
    parameter WIDTH = 1,
    // number of register stages (0: a wire)
    parameter DEPTH = 1
)
(
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire             clk,
    // synchronous clear of every stage (tie to 0 for pure data)
    input  wire             clr,
    // shift enable
    input  wire             en,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire [WIDTH-1:0] d,
    output wire [WIDTH-1:0] q
);

generate
    if (DEPTH == 0) begin : g_wire
        assign q = d;
    end else begin : g_regs
        // one register per stage, each reading the stage before it: a simulator copies
        // stage by stage (last first) instead of shifting one wide vector
        genvar k;
        for (k = 0; k < DEPTH; k = k + 1) begin : g_st
            reg [WIDTH-1:0] sr;
            wire [WIDTH-1:0] prev;
            if (k == 0) begin : g_first
                assign prev = d;
            end else begin : g_next
                assign prev = g_st[k-1].sr;
            end
            always @(posedge clk) begin
                if (en) begin
                    sr <= prev;
                end
                if (clr) begin
                    sr <= {WIDTH{1'b0}};
                end
            end
        end
        assign q = g_st[DEPTH-1].sr;
    end
endgenerate

endmodule

`resetall
