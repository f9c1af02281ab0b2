// intergrad: native sign extension and signed multiply for the Verilated model.
//
// Force-included (-include) into every C++ file of the simulator library by
// intergrad.device.sim.  Verilator's runtime sign-extends an l-bit value with the generic
// expression -(x & (1 << (l-1))) | x, which g++ does not turn into a sign-extending load,
// and its signed multiply sign-extends both operands again at 32 bits.  Every PE of the
// array does this for each operand on every cycle (about a quarter of the simulator's
// instructions on the default array).  The macros below replace the two runtime functions
// with equivalents that are exact for every width: 8- and 16-bit operands use a native
// signed cast, a 32-bit operand needs no extension, other widths keep Verilator's
// expression.  Only the generated model is affected, never the RTL; the cocotb testbenches
// build the RTL with an unmodified Verilator, and the tests compare both against the same
// golden model.
#ifndef INTERGRAD_VERILATED_FAST_H_
#define INTERGRAD_VERILATED_FAST_H_

#include "verilated.h"

static inline IData ig_extends_ii(int lbits, IData lhs) VL_PURE {
    // lhs is clean (no bits set at or above lbits), as for VL_EXTENDS_II
    return lbits == 32 ? lhs
         : lbits == 16 ? static_cast<IData>(static_cast<int32_t>(static_cast<int16_t>(lhs)))
         : lbits == 8  ? static_cast<IData>(static_cast<int32_t>(static_cast<int8_t>(lhs)))
                       : (VL_EXTENDSIGN_I(lbits, lhs) | lhs);
}

static inline IData ig_muls_iii(int lbits, IData lhs, IData rhs) VL_PURE {
    // the low 32 bits of a product do not depend on signedness: multiply unsigned (no
    // signed-overflow UB), after sign-extending both operands
    return ig_extends_ii(lbits, lhs) * ig_extends_ii(lbits, rhs);
}

#define VL_EXTENDS_II(obits, lbits, lhs) ig_extends_ii((lbits), (lhs))
#define VL_MULS_III(lbits, lhs, rhs) ig_muls_iii((lbits), (lhs), (rhs))

#endif  // INTERGRAD_VERILATED_FAST_H_
