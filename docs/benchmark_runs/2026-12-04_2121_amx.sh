#!/usr/bin/env bash
# The same command before (commit fe157c1: *_before.json) and after the deploy
# pipeline restructure, one after the other on a quiet Intel Xeon with AMX.
cd "$(dirname "$0")/../.."  # the repository root
.venv/bin/python tools/benchmark.py \
  configs/pspnet_repvgg_b1g2_fast_cityscapes.py@fused,winograd_lowres,int8_lowres,reduced_lowres \
  --baselines mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py@unfused,fused \
  --runs 3 --threads 2 --out-dir work_dirs/bench_amx
