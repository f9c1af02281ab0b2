# intergrad overlay for the PYNQ-Z2: Vivado batch build (project mode).
#
# Target: Vivado 2022.1, the version PYNQ 3.0.x images are built with (another version
# is tried with a warning).  Run through the Makefile, which passes the build's values
# from params.py (i.e. from host/intergrad/spec.py):
#
#   vivado -mode batch -source build.tcl -tclargs ROWS=8 COLS=8 ... [BUILD_DIR=build]
#
# Result, side by side under one base name (what pynq.Overlay wants):
#   <OUT_DIR>/<OUT_NAME>.bit   <OUT_DIR>/<OUT_NAME>.hwh
# plus <OUT_NAME>_utilization.rpt and <OUT_NAME>_timing.rpt.

set vivado_version 2022.1
set part xc7z020clg400-1
set board_part_pattern {tul.com.tw:pynq-z2:part0:*}
set design_name intergrad_bd

set script_dir [file dirname [file normalize [info script]]]
set hls_dir [file join [file dirname $script_dir] hls_verilog]

# ---------------------------------------------------------------------- arguments
# build values (from params.py; all required) and options (with defaults)
set required_keys {ROWS COLS DATA_W ACC_W DUAL_MAC IN_AXIS_BITS OUT_AXIS_BITS MM_DATA_W SOURCES INCLUDES}
array set opt [list BUILD_DIR build OUT_DIR $script_dir OUT_NAME intergrad JOBS 4 STRICT_TIMING 1]
foreach arg $argv {
    if {![regexp {^([A-Z_0-9]+)=(.*)$} $arg -> key value]} {
        error "build.tcl: argument '$arg' is not KEY=VALUE"
    }
    if {[lsearch -exact $required_keys $key] >= 0} {
        set param($key) $value
    } elseif {[info exists opt($key)]} {
        set opt($key) $value
    } else {
        error "build.tcl: unknown key '$key' (build values: $required_keys; options: [array names opt])"
    }
}
foreach key $required_keys {
    if {![info exists param($key)]} {
        error "build.tcl: $key=... missing: run `make` in overlay/, which takes the values from params.py"
    }
}
puts "intergrad overlay: [array get param]"

if {![string match "${vivado_version}*" [version -short]]} {
    puts "WARNING: this flow targets Vivado $vivado_version (PYNQ 3.0.x); running [version -short]"
}

# ---------------------------------------------------------------------- project
set build_dir [file normalize $opt(BUILD_DIR)]
set out_dir [file normalize $opt(OUT_DIR)]
create_project -force intergrad $build_dir -part $part

set use_board 0
set boards [get_board_parts -quiet -latest_file_version $board_part_pattern]
if {[llength $boards] > 0} {
    set_property board_part [lindex $boards 0] [current_project]
    set use_board 1
    puts "intergrad overlay: board files [lindex $boards 0]"
} else {
    puts "intergrad overlay: PYNQ-Z2 board files not installed; part $part with the PS7 preset applied explicitly"
}

# RTL: the core's sources and its generated register include (hls_verilog/); the include
# directory lets `include "intergrad_regs.vh" resolve, for the module reference too
foreach f [split $param(SOURCES) ,] {
    add_files -norecurse -fileset sources_1 [file join $hls_dir $f]
}
foreach f [split $param(INCLUDES) ,] {
    set vh [file join $hls_dir $f]
    add_files -norecurse -fileset sources_1 $vh
    set_property file_type {Verilog Header} [get_files $vh]
}
set_property include_dirs [list $hls_dir] [get_filesets sources_1]
update_compile_order -fileset sources_1

# constraints: the 100 MHz clock (intergrad.xdc), read after the IPs' own constraints
set xdc [file join $script_dir intergrad.xdc]
add_files -norecurse -fileset constrs_1 $xdc
set_property PROCESSING_ORDER LATE [get_files $xdc]
set_property USED_IN {synthesis implementation} [get_files $xdc]

# ---------------------------------------------------------------------- block design
source [file join $script_dir intergrad_bd.tcl]
create_intergrad_bd $design_name $use_board

set bd_file [get_files ${design_name}.bd]
generate_target all $bd_file
set wrapper [make_wrapper -files $bd_file -top]
add_files -norecurse -fileset sources_1 $wrapper
set_property top ${design_name}_wrapper [get_filesets sources_1]
update_compile_order -fileset sources_1

# ---------------------------------------------------------------------- implementation
launch_runs synth_1 -jobs $opt(JOBS)
wait_on_run synth_1
if {[get_property PROGRESS [get_runs synth_1]] ne "100%"} {
    error "build.tcl: synthesis failed, see $build_dir/intergrad.runs/synth_1/runme.log"
}
launch_runs impl_1 -to_step write_bitstream -jobs $opt(JOBS)
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    error "build.tcl: implementation failed, see $build_dir/intergrad.runs/impl_1/runme.log"
}

open_run impl_1
file mkdir $out_dir
report_utilization -file [file join $out_dir $opt(OUT_NAME)_utilization.rpt]
report_timing_summary -file [file join $out_dir $opt(OUT_NAME)_timing.rpt]
# the core's clock must be the 10 ns of intergrad.xdc (a missing or overridden constraint
# would leave the core unconstrained or timed at another period)
set core_clk [get_clocks -quiet -of_objects [get_pins -quiet -hierarchical -filter {NAME =~ *intergrad_0/clk}]]
set period [get_property -quiet PERIOD $core_clk]
set wns [get_property STATS.WNS [get_runs impl_1]]
set whs [get_property STATS.WHS [get_runs impl_1]]
puts "intergrad overlay: core clock '$core_clk' period $period ns; WNS $wns ns, WHS $whs ns"

set problems {}
if {$period eq "" || abs($period - 10.0) > 0.001} {
    lappend problems "the core's clock is not the 10 ns clk_fpga_0 of intergrad.xdc (found '$core_clk', period '$period')"
}
if {$wns eq "" || ![string is double -strict $wns]} {
    lappend problems "no setup slack reported (is the clock constrained?)"
} elseif {$wns < 0} {
    lappend problems "setup timing not met at 100 MHz (WNS $wns ns)"
}
if {$whs ne "" && [string is double -strict $whs] && $whs < 0} {
    lappend problems "hold timing not met (WHS $whs ns)"
}
if {[llength $problems] > 0} {
    set msg "[join $problems {; }]; see [file join $out_dir $opt(OUT_NAME)_timing.rpt]"
    if {$opt(STRICT_TIMING)} {
        error "build.tcl: $msg; no .bit/.hwh written (STRICT_TIMING=0 writes them anyway, marked untimed)"
    }
    puts "WARNING: $msg; writing the .bit/.hwh anyway (STRICT_TIMING=0): do not trust this bitstream at 100 MHz"
}

# ---------------------------------------------------------------------- .bit + .hwh
set bit [file join [get_property DIRECTORY [get_runs impl_1]] ${design_name}_wrapper.bit]
set hwh [lindex [get_files -quiet -all -of_objects $bd_file ${design_name}.hwh] 0]
if {$hwh eq ""} {
    set hwh [lindex [glob -nocomplain [file join $build_dir * sources_1 bd $design_name hw_handoff ${design_name}.hwh]] 0]
}
if {![file exists $bit] || $hwh eq "" || ![file exists $hwh]} {
    error "build.tcl: bitstream ($bit) or hardware handoff ($hwh) not found"
}
file copy -force $bit [file join $out_dir $opt(OUT_NAME).bit]
file copy -force $hwh [file join $out_dir $opt(OUT_NAME).hwh]
puts "intergrad overlay: wrote [file join $out_dir $opt(OUT_NAME).bit] and [file join $out_dir $opt(OUT_NAME).hwh]"

