#!/usr/bin/env bash
# The int8 forms of B1g2-fast with the default int8 recipe beside the plain
# one (min/max ranges, no equalization, no fallback), in one run.
cd "$(dirname "$0")/../.."  # the repository root
.venv/bin/python tools/benchmark.py \
  configs/pspnet_repvgg_b1g2_fast_cityscapes.py@int8,int8_lowres,int8_plain,int8_plain_lowres \
  --baselines --runs 5 --threads 2 --out-dir work_dirs/bench_int8
