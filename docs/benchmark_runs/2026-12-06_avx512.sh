#!/usr/bin/env bash
# B1g2-fast against mmseg's R50-D8 in the fast forms; run with the previous
# release's code (2026-12-06_avx512_previous_release.json) and right after
# with the current code (2026-12-06_avx512.json), on a quiet machine.
cd "$(dirname "$0")/../.."  # the repository root
.venv/bin/python tools/benchmark.py \
  configs/pspnet_repvgg_b1g2_fast_cityscapes.py@fused,winograd_lowres,int8_lowres,reduced_lowres \
  --baselines mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py@unfused,fused \
  --runs 3 --threads 2 --out-dir work_dirs/bench_avx512
