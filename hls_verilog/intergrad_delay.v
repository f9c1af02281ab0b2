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
    end else if (DEPTH == 1) begin : g_one
        reg [WIDTH-1:0] sr;
        always @(posedge clk) begin
            if (en) begin
                sr <= d;
            end
            if (clr) begin
                sr <= {WIDTH{1'b0}};
            end
        end
        assign q = sr;
    end else begin : g_regs
        // stages packed in one vector, newest in the low bits: one wide shift per step
        reg [WIDTH*DEPTH-1:0] sr;
        always @(posedge clk) begin
            if (en) begin
                sr <= {sr[WIDTH*(DEPTH-1)-1:0], d};
            end
            if (clr) begin
                sr <= {WIDTH*DEPTH{1'b0}};
            end
        end
        assign q = sr[WIDTH*DEPTH-1 -: WIDTH];
    end
endgenerate

endmodule

`resetall
