// intergrad: C++ harness that runs the Verilator model of intergrad_top as a device.
//
// Built by intergrad.device.sim into a shared library and driven through ctypes.  Whole
// AXI-Lite transactions and whole stream transfers run here, cycle by cycle, so Python
// never steps the clock.  Optional random idle on the input stream and backpressure on
// the output stream exercise the handshakes; optional VCD tracing for debugging.

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>

#include "Vintergrad_top.h"
#include "verilated.h"
#if VM_TRACE
#include "verilated_vcd_c.h"
#endif

namespace {

struct Sim {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vintergrad_top> top;
#if VM_TRACE
    std::unique_ptr<VerilatedVcdC> vcd;
#endif
    uint64_t cycle = 0;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    uint32_t in_idle_ppm = 0;    // probability of an idle input cycle, per million
    uint32_t out_busy_ppm = 0;   // probability of a not-ready output cycle, per million
};

inline uint32_t rand_ppm(Sim* s) {
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return static_cast<uint32_t>(s->rng % 1000000u);
}

template <typename T>
inline void put_bytes(T& port, const uint8_t* src, size_t nbytes) {
    using U = std::remove_reference_t<T>;
    if constexpr (std::is_integral_v<U>) {
        U v = 0;
        std::memcpy(&v, src, nbytes < sizeof(U) ? nbytes : sizeof(U));
        port = v;
    } else {
        // VlWide: 32-bit words, little endian
        const size_t words = sizeof(port.m_storage) / sizeof(port.m_storage[0]);
        std::memset(port.m_storage, 0, sizeof(port.m_storage));
        std::memcpy(port.m_storage, src, nbytes < words * 4 ? nbytes : words * 4);
    }
}

template <typename T>
inline void get_bytes(const T& port, uint8_t* dst, size_t nbytes) {
    using U = std::remove_cv_t<std::remove_reference_t<T>>;
    if constexpr (std::is_integral_v<U>) {
        U v = port;
        std::memcpy(dst, &v, nbytes < sizeof(U) ? nbytes : sizeof(U));
    } else {
        std::memcpy(dst, port.m_storage, nbytes);
    }
}

// One clock cycle.  The caller sets the inputs and calls eval() (which also settles the
// falling edge of the previous cycle) before sampling handshakes; tick() then makes the
// rising edge and leaves clk low without evaluating, to save one eval per cycle.
// Traced, a cycle [T, T+10) shows the settled pre-edge values at T (what handshakes on the
// edge) and the rising edge at T+5.
inline void tick(Sim* s) {
#if VM_TRACE
    if (s->vcd) s->vcd->dump(s->ctx->time());
#endif
    s->ctx->timeInc(5);
    s->top->clk = 1;
    s->top->eval();
#if VM_TRACE
    if (s->vcd) s->vcd->dump(s->ctx->time());
#endif
    s->ctx->timeInc(5);
    s->top->clk = 0;
    s->cycle++;
}

inline void cycle(Sim* s) {
    s->top->eval();
    tick(s);
}

void idle_inputs(Sim* s) {
    auto* t = s->top.get();
    t->s_axis_tvalid = 0;
    t->s_axis_tlast = 0;
    t->m_axis_tready = 0;
    t->s_axil_awvalid = 0;
    t->s_axil_wvalid = 0;
    t->s_axil_bready = 0;
    t->s_axil_arvalid = 0;
    t->s_axil_rready = 0;
    t->s_axil_awprot = 0;
    t->s_axil_arprot = 0;
    t->s_axil_wstrb = 0xF;
}

int axil_write(Sim* s, uint32_t addr, uint32_t data, uint64_t max_cycles) {
    auto* t = s->top.get();
    t->s_axil_awaddr = addr;
    t->s_axil_wdata = data;
    t->s_axil_wstrb = 0xF;
    t->s_axil_awvalid = 1;
    t->s_axil_wvalid = 1;
    t->s_axil_bready = 1;
    bool aw_done = false, w_done = false;
    for (uint64_t i = 0; i < max_cycles; i++) {
        t->eval();
        bool aw = t->s_axil_awvalid && t->s_axil_awready;
        bool w = t->s_axil_wvalid && t->s_axil_wready;
        bool b = t->s_axil_bvalid && t->s_axil_bready;
        tick(s);
        if (aw) { aw_done = true; t->s_axil_awvalid = 0; }
        if (w) { w_done = true; t->s_axil_wvalid = 0; }
        if (b && aw_done && w_done) { t->s_axil_bready = 0; return 0; }
    }
    t->s_axil_awvalid = 0;
    t->s_axil_wvalid = 0;
    t->s_axil_bready = 0;
    return -1;
}

int axil_read(Sim* s, uint32_t addr, uint32_t* data, uint64_t max_cycles) {
    auto* t = s->top.get();
    t->s_axil_araddr = addr;
    t->s_axil_arvalid = 1;
    t->s_axil_rready = 1;
    for (uint64_t i = 0; i < max_cycles; i++) {
        t->eval();
        bool ar = t->s_axil_arvalid && t->s_axil_arready;
        bool r = t->s_axil_rvalid && t->s_axil_rready;
        uint32_t rd = t->s_axil_rdata;
        tick(s);
        if (ar) t->s_axil_arvalid = 0;
        if (r) { *data = rd; t->s_axil_rready = 0; return 0; }
    }
    t->s_axil_arvalid = 0;
    t->s_axil_rready = 0;
    return -1;
}

}  // namespace

extern "C" {

void* ig_create(const char* vcd_path) {
    auto* s = new Sim();
    s->ctx = std::make_unique<VerilatedContext>();
    s->ctx->debug(0);
    s->ctx->randReset(0);
#if VM_TRACE
    if (vcd_path && vcd_path[0]) s->ctx->traceEverOn(true);
#endif
    s->top = std::make_unique<Vintergrad_top>(s->ctx.get(), "top");
#if VM_TRACE
    if (vcd_path && vcd_path[0]) {
        s->vcd = std::make_unique<VerilatedVcdC>();
        s->top->trace(s->vcd.get(), 99);
        s->vcd->open(vcd_path);
    }
#else
    (void)vcd_path;
#endif
    idle_inputs(s);
    s->top->clk = 0;
    s->top->rst = 1;
    for (int i = 0; i < 4; i++) cycle(s);
    s->top->rst = 0;
    cycle(s);
    return s;
}

void ig_destroy(void* h) {
    auto* s = static_cast<Sim*>(h);
    if (!s) return;
    s->top->final();
#if VM_TRACE
    if (s->vcd) s->vcd->close();
#endif
    delete s;
}

int ig_has_trace(void) { return VM_TRACE; }

void ig_set_stalls(void* h, uint32_t in_idle_ppm, uint32_t out_busy_ppm, uint64_t seed) {
    auto* s = static_cast<Sim*>(h);
    s->in_idle_ppm = in_idle_ppm;
    s->out_busy_ppm = out_busy_ppm;
    s->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
}

void ig_hard_reset(void* h) {
    auto* s = static_cast<Sim*>(h);
    idle_inputs(s);
    s->top->rst = 1;
    for (int i = 0; i < 4; i++) cycle(s);
    s->top->rst = 0;
    cycle(s);
}

uint64_t ig_cycle(void* h) { return static_cast<Sim*>(h)->cycle; }

void ig_idle(void* h, uint64_t cycles) {
    auto* s = static_cast<Sim*>(h);
    for (uint64_t i = 0; i < cycles; i++) cycle(s);
}

int ig_write(void* h, uint32_t addr, uint32_t data) {
    return axil_write(static_cast<Sim*>(h), addr, data, 1000);
}

int ig_read(void* h, uint32_t addr, uint32_t* data) {
    return axil_read(static_cast<Sim*>(h), addr, data, 1000);
}

// Stream n_in input beats (tlast on the last, unless no_tlast) while collecting output
// beats into out (max_out of them), then poll STATUS until the core is idle.
// Returns 0 when done, 1 on timeout (max_cycles or wall-clock deadline), 2 when the core
// produced more output beats than max_out.  *n_in_done / *n_out report progress.
int ig_transfer(void* h, const uint8_t* in, uint64_t n_in, uint32_t in_beat_bytes,
                uint8_t* out, uint64_t max_out, uint32_t out_beat_bytes,
                uint32_t status_addr, uint64_t max_cycles, double timeout_s,
                uint64_t* n_in_done, uint64_t* n_out) {
    auto* s = static_cast<Sim*>(h);
    auto* t = s->top.get();
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t i_in = 0, i_out = 0, c = 0;
    int rc = 1;
    bool streams_done = false;
    while (c < max_cycles) {
        if ((c & 0xFFFF) == 0xFFFF && timeout_s > 0) {
            double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (el > timeout_s) break;
        }
        if (!streams_done) {
            bool in_v = i_in < n_in && !(s->in_idle_ppm && rand_ppm(s) < s->in_idle_ppm);
            t->s_axis_tvalid = in_v;
            if (in_v) {
                put_bytes(t->s_axis_tdata, in + i_in * in_beat_bytes, in_beat_bytes);
                t->s_axis_tlast = (i_in == n_in - 1);
            } else {
                t->s_axis_tlast = 0;
            }
            t->m_axis_tready = !(s->out_busy_ppm && rand_ppm(s) < s->out_busy_ppm);
            t->eval();
            bool s_fire = t->s_axis_tvalid && t->s_axis_tready;
            bool m_fire = t->m_axis_tvalid && t->m_axis_tready;
            if (m_fire) {
                if (i_out >= max_out) { rc = 2; break; }
                get_bytes(t->m_axis_tdata, out + i_out * out_beat_bytes, out_beat_bytes);
            }
            tick(s);
            c++;
            if (s_fire) i_in++;
            if (m_fire) i_out++;
            if (i_in == n_in && i_out == max_out) {
                streams_done = true;
                t->s_axis_tvalid = 0;
                t->s_axis_tlast = 0;
                t->m_axis_tready = 0;  // a surplus beat stays valid: overflow below
            }
        } else {
            uint32_t st = 0;
            uint64_t before = s->cycle;
            if (axil_read(s, status_addr, &st, 100) != 0) { rc = 1; break; }
            c += s->cycle - before;
            t->eval();
            if (t->m_axis_tvalid) { rc = 2; break; }
            if ((st & 1u) == 0) { rc = 0; break; }
        }
    }
    t->s_axis_tvalid = 0;
    t->s_axis_tlast = 0;
    t->m_axis_tready = 0;
    t->eval();
    *n_in_done = i_in;
    *n_out = i_out;
    return rc;
}

}  // extern "C"
