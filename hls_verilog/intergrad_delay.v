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
        reg [WIDTH-1:0] sr [0:DEPTH-1];
        integer i;
        always @(posedge clk) begin
            if (en) begin
                sr[0] <= d;
                for (i = 1; i < DEPTH; i = i + 1) begin
                    sr[i] <= sr[i-1];
                end
            end
            if (clr) begin
                for (i = 0; i < DEPTH; i = i + 1) begin
                    sr[i] <= {WIDTH{1'b0}};
                end
            end
        end
        assign q = sr[DEPTH-1];
    end
endgenerate

endmodule

`resetall
