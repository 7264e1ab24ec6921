#!/usr/bin/env bash
# The 05:51 run (AMD EPYC, AVX-512 + AVX512-BF16 + AVX512-VNNI): PyTorch's int8
# forms against onnxruntime's own int8, B1g2-fast against R50-D8 (5 min).
cd "$(dirname "$0")/../.."  # the repository root
.venv/bin/python tools/benchmark.py \
  configs/pspnet_repvgg_b1g2_fast_cityscapes.py@fused,reduced_lowres,int8,int8_lowres,onnxruntime_int8,onnxruntime_int8_lowres \
  --baselines mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py@unfused,int8,int8_lowres \
  --runs 3 --out-dir work_dirs/bench_0551
