# intergrad overlay: IP Integrator block design for the PYNQ-Z2 (xc7z020clg400-1).
#
# Target: Vivado 2022.1, the version PYNQ 3.0.x images are built with.  IP VLNVs are given
# without a version so the IP catalog's current one is used.
#
# Sourced by build.tcl, which fills the array `param` from its -tclargs (the Makefile takes
# the values from params.py, i.e. from host/intergrad/spec.py); no build value is written
# here as a number.  tests/test_overlay.py parses this file and checks it against the RTL
# top's real ports and parameters (pyverilog): keep the cell names, pin names and the
# `set_property -dict [list ...] $var` form on one cell each.
#
#   cell          what                                        PS address (GP0)
#   intergrad_0   the core: module reference intergrad_top   0x43C0_0000, 64K (8 address bits used)
#   axi_dma_0     AXI DMA, simple (no scatter-gather) mode    0x4040_0000, 64K
#
# The Python driver (host/intergrad/device/pynq_backend.py) looks both cells up by these
# names in the overlay's ip_dict.  One fabric clock, FCLK_CLK0 = 100 MHz, for everything.
#
#   DMA M_AXIS_MM2S --> intergrad_0/s_axis     intergrad_0/m_axis --> DMA S_AXIS_S2MM
#   DMA M_AXI_MM2S, M_AXI_S2MM --> axi_mem_intercon --> PS S_AXI_HP0 (64-bit, DDR)
#   PS M_AXI_GP0 --> ps7_axi_periph --> intergrad_0/s_axil, axi_dma_0/S_AXI_LITE
#   rst_ps7_100M/peripheral_reset (ACTIVE HIGH) --> intergrad_0/rst

# PS7 settings of the PYNQ-Z2 (DDR3L: MT41K256M16 RE-125 at 1.35 V, clocks, MIO), applied when the board files
# (tul.com.tw:pynq-z2:part0:1.0) are not installed and the project targets the bare part.
# Values as in the PYNQ-Z2 board preset / PYNQ's Pynq-Z2 hardware project.
proc pynq_z2_ps7_preset {} {
    return [list \
        CONFIG.PCW_PRESET_BANK0_VOLTAGE {LVCMOS 3.3V} \
        CONFIG.PCW_PRESET_BANK1_VOLTAGE {LVCMOS 1.8V} \
        CONFIG.PCW_CRYSTAL_PERIPHERAL_FREQMHZ {50} \
        CONFIG.PCW_APU_PERIPHERAL_FREQMHZ {650} \
        CONFIG.PCW_UIPARAM_DDR_ENABLE {1} \
        CONFIG.PCW_UIPARAM_DDR_MEMORY_TYPE {DDR 3 (Low Voltage)} \
        CONFIG.PCW_UIPARAM_DDR_PARTNO {MT41K256M16 RE-125} \
        CONFIG.PCW_UIPARAM_DDR_BUS_WIDTH {16 Bit} \
        CONFIG.PCW_UIPARAM_DDR_FREQ_MHZ {525} \
        CONFIG.PCW_UIPARAM_DDR_TRAIN_DATA_EYE {1} \
        CONFIG.PCW_UIPARAM_DDR_TRAIN_READ_GATE {1} \
        CONFIG.PCW_UIPARAM_DDR_TRAIN_WRITE_LEVEL {1} \
        CONFIG.PCW_UIPARAM_DDR_BOARD_DELAY0 {0.223} \
        CONFIG.PCW_UIPARAM_DDR_BOARD_DELAY1 {0.212} \
        CONFIG.PCW_UIPARAM_DDR_BOARD_DELAY2 {0.085} \
        CONFIG.PCW_UIPARAM_DDR_BOARD_DELAY3 {0.092} \
        CONFIG.PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_0 {0.040} \
        CONFIG.PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_1 {0.058} \
        CONFIG.PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_2 {-0.009} \
        CONFIG.PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_3 {-0.033} \
        CONFIG.PCW_QSPI_PERIPHERAL_ENABLE {1} \
        CONFIG.PCW_QSPI_GRP_SINGLE_SS_ENABLE {1} \
        CONFIG.PCW_QSPI_GRP_FBCLK_ENABLE {1} \
        CONFIG.PCW_ENET0_PERIPHERAL_ENABLE {1} \
        CONFIG.PCW_ENET0_ENET0_IO {MIO 16 .. 27} \
        CONFIG.PCW_ENET0_GRP_MDIO_ENABLE {1} \
        CONFIG.PCW_ENET0_RESET_ENABLE {1} \
        CONFIG.PCW_ENET0_RESET_IO {MIO 9} \
        CONFIG.PCW_SD0_PERIPHERAL_ENABLE {1} \
        CONFIG.PCW_SD0_SD0_IO {MIO 40 .. 45} \
        CONFIG.PCW_SD0_GRP_CD_ENABLE {1} \
        CONFIG.PCW_SD0_GRP_CD_IO {MIO 47} \
        CONFIG.PCW_SDIO_PERIPHERAL_FREQMHZ {50} \
        CONFIG.PCW_UART0_PERIPHERAL_ENABLE {1} \
        CONFIG.PCW_UART0_UART0_IO {MIO 14 .. 15} \
        CONFIG.PCW_UART0_BAUD_RATE {115200} \
        CONFIG.PCW_USB0_PERIPHERAL_ENABLE {1} \
        CONFIG.PCW_USB0_USB0_IO {MIO 28 .. 39} \
        CONFIG.PCW_USB0_RESET_ENABLE {1} \
        CONFIG.PCW_USB0_RESET_IO {MIO 46} \
        CONFIG.PCW_GPIO_MIO_GPIO_ENABLE {1} \
    ]
}

# Create the block design `design_name`.  use_board_preset: 1 when the PYNQ-Z2 board files
# are installed (the board preset then configures the PS), 0 for the bare part.
proc create_intergrad_bd {design_name use_board_preset} {
    global param

    create_bd_design $design_name
    current_bd_design $design_name

    # ------------------------------------------------------------------ Zynq PS
    set ps7 [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7 ps7]
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
        -config [list make_external {FIXED_IO, DDR} apply_board_preset $use_board_preset \
                     Master Disable Slave Disable] $ps7
    if {!$use_board_preset} {
        set_property -dict [pynq_z2_ps7_preset] $ps7
    }
    # GP0 master for control, HP0 slave (64-bit) for the DMA, FCLK_CLK0 = 100 MHz
    set_property -dict [list \
        CONFIG.PCW_USE_M_AXI_GP0 {1} \
        CONFIG.PCW_USE_S_AXI_HP0 {1} \
        CONFIG.PCW_S_AXI_HP0_DATA_WIDTH {64} \
        CONFIG.PCW_FPGA_FCLK0_ENABLE {1} \
        CONFIG.PCW_EN_CLK0_PORT {1} \
        CONFIG.PCW_EN_RST0_PORT {1} \
        CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {100} \
    ] $ps7

    # ------------------------------------------------------------------ the core
    # Module reference of hls_verilog/intergrad_top.v (sources and the include directory
    # for intergrad_regs.vh were added to the project by build.tcl).  Its AXI interfaces
    # are inferred from the port prefixes: s_axis (AXI4-Stream slave), m_axis (AXI4-Stream
    # master), s_axil (AXI4-Lite slave with awprot/arprot, so nothing needs tying off).
    # No tkeep on either stream: the DMA's S2MM then takes all bytes as valid.
    set core [create_bd_cell -type module -reference intergrad_top intergrad_0]
    set_property -dict [list \
        CONFIG.ROWS $param(ROWS) \
        CONFIG.COLS $param(COLS) \
        CONFIG.DATA_W $param(DATA_W) \
        CONFIG.ACC_W $param(ACC_W) \
        CONFIG.DUAL_MAC $param(DUAL_MAC) \
    ] $core
    # rst is synchronous and ACTIVE HIGH (driven by peripheral_reset below); clk clocks
    # all three interfaces.
    set_property -dict [list \
        CONFIG.POLARITY {ACTIVE_HIGH} \
    ] [get_bd_pins intergrad_0/rst]
    set_property -dict [list \
        CONFIG.ASSOCIATED_BUSIF {s_axis:m_axis:s_axil} \
        CONFIG.ASSOCIATED_RESET {rst} \
    ] [get_bd_pins intergrad_0/clk]

    # ------------------------------------------------------------------ AXI DMA
    # Simple mode; stream widths = the core's stream widths.  PG021 wants the memory-map
    # width >= the stream width, so MM_DATA_W is the wider stream's width; the AXI
    # interconnect down-sizes it to HP0's 64 bits.  26-bit length register: 64 MiB - 1
    # bytes per transfer.  No data realignment engine (the default, and not offered for
    # streams wider than 64 bits): buffers aligned to MM_DATA_W, as pynq.allocate's are.
    set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma axi_dma_0]
    set_property -dict [list \
        CONFIG.c_include_sg {0} \
        CONFIG.c_sg_length_width {26} \
        CONFIG.c_addr_width {32} \
        CONFIG.c_include_mm2s {1} \
        CONFIG.c_include_s2mm {1} \
        CONFIG.c_m_axi_mm2s_data_width $param(MM_DATA_W) \
        CONFIG.c_m_axis_mm2s_tdata_width $param(IN_AXIS_BITS) \
        CONFIG.c_m_axi_s2mm_data_width $param(MM_DATA_W) \
        CONFIG.c_s_axis_s2mm_tdata_width $param(OUT_AXIS_BITS) \
        CONFIG.c_mm2s_burst_size {16} \
        CONFIG.c_s2mm_burst_size {16} \
    ] $dma

    # ------------------------------------------------------------------ interconnects, reset
    set periph [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_interconnect ps7_axi_periph]
    set_property -dict [list \
        CONFIG.NUM_SI {1} \
        CONFIG.NUM_MI {2} \
    ] $periph
    set memic [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_interconnect axi_mem_intercon]
    set_property -dict [list \
        CONFIG.NUM_SI {2} \
        CONFIG.NUM_MI {1} \
    ] $memic
    set rstgen [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_ps7_100M]

    # ------------------------------------------------------------------ interface nets
    connect_bd_intf_net [get_bd_intf_pins ps7/M_AXI_GP0] [get_bd_intf_pins ps7_axi_periph/S00_AXI]
    connect_bd_intf_net [get_bd_intf_pins ps7_axi_periph/M00_AXI] [get_bd_intf_pins intergrad_0/s_axil]
    connect_bd_intf_net [get_bd_intf_pins ps7_axi_periph/M01_AXI] [get_bd_intf_pins axi_dma_0/S_AXI_LITE]
    connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXIS_MM2S] [get_bd_intf_pins intergrad_0/s_axis]
    connect_bd_intf_net [get_bd_intf_pins intergrad_0/m_axis] [get_bd_intf_pins axi_dma_0/S_AXIS_S2MM]
    connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXI_MM2S] [get_bd_intf_pins axi_mem_intercon/S00_AXI]
    connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXI_S2MM] [get_bd_intf_pins axi_mem_intercon/S01_AXI]
    connect_bd_intf_net [get_bd_intf_pins axi_mem_intercon/M00_AXI] [get_bd_intf_pins ps7/S_AXI_HP0]

    # ------------------------------------------------------------------ clock and resets
    connect_bd_net [get_bd_pins ps7/FCLK_CLK0] \
        [get_bd_pins ps7/M_AXI_GP0_ACLK] \
        [get_bd_pins ps7/S_AXI_HP0_ACLK] \
        [get_bd_pins intergrad_0/clk] \
        [get_bd_pins axi_dma_0/s_axi_lite_aclk] \
        [get_bd_pins axi_dma_0/m_axi_mm2s_aclk] \
        [get_bd_pins axi_dma_0/m_axi_s2mm_aclk] \
        [get_bd_pins ps7_axi_periph/ACLK] \
        [get_bd_pins ps7_axi_periph/S00_ACLK] \
        [get_bd_pins ps7_axi_periph/M00_ACLK] \
        [get_bd_pins ps7_axi_periph/M01_ACLK] \
        [get_bd_pins axi_mem_intercon/ACLK] \
        [get_bd_pins axi_mem_intercon/S00_ACLK] \
        [get_bd_pins axi_mem_intercon/S01_ACLK] \
        [get_bd_pins axi_mem_intercon/M00_ACLK] \
        [get_bd_pins rst_ps7_100M/slowest_sync_clk]
    connect_bd_net [get_bd_pins ps7/FCLK_RESET0_N] [get_bd_pins rst_ps7_100M/ext_reset_in]
    connect_bd_net [get_bd_pins rst_ps7_100M/interconnect_aresetn] \
        [get_bd_pins ps7_axi_periph/ARESETN] \
        [get_bd_pins axi_mem_intercon/ARESETN]
    connect_bd_net [get_bd_pins rst_ps7_100M/peripheral_aresetn] \
        [get_bd_pins axi_dma_0/axi_resetn] \
        [get_bd_pins ps7_axi_periph/S00_ARESETN] \
        [get_bd_pins ps7_axi_periph/M00_ARESETN] \
        [get_bd_pins ps7_axi_periph/M01_ARESETN] \
        [get_bd_pins axi_mem_intercon/S00_ARESETN] \
        [get_bd_pins axi_mem_intercon/S01_ARESETN] \
        [get_bd_pins axi_mem_intercon/M00_ARESETN]
    # the core's reset is active high: the reset block's active-high output
    connect_bd_net [get_bd_pins rst_ps7_100M/peripheral_reset] [get_bd_pins intergrad_0/rst]

    # ------------------------------------------------------------------ address map
    set ps_data [get_bd_addr_spaces ps7/Data]
    assign_bd_address -offset 0x43C00000 -range 64K -target_address_space $ps_data \
        [get_bd_addr_segs -of_objects [get_bd_intf_pins intergrad_0/s_axil]] -force
    assign_bd_address -offset 0x40400000 -range 64K -target_address_space $ps_data \
        [get_bd_addr_segs axi_dma_0/S_AXI_LITE/Reg] -force
    foreach space {Data_MM2S Data_S2MM} {
        assign_bd_address -offset 0x00000000 -range 512M \
            -target_address_space [get_bd_addr_spaces axi_dma_0/$space] \
            [get_bd_addr_segs ps7/S_AXI_HP0/HP0_DDR_LOWOCM] -force
    }

    validate_bd_design
    save_bd_design
}
