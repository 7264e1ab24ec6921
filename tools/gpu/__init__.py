"""The GPU check's parts (``bash tools/gpu_check.sh``; see its README
section): :mod:`.install` (standard library only), :mod:`.plan`,
:mod:`.steps`, :mod:`.check`, :mod:`.report`, :mod:`.verdicts` and the
torch-only :mod:`.pool_bench`."""
