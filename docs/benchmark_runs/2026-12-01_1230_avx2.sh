#!/usr/bin/env bash
# Run C (NNPACK entry point: kernels transformed once, ReLU fused): B1g2-fast and R50-D8, every fp32/int8/runtime form, bf16 forms asked for (skipped when not native).
cd "$(dirname "$0")/../.."  # the repository root
.venv/bin/python tools/benchmark.py \
  configs/pspnet_repvgg_b1g2_fast_cityscapes.py@unfused,fused,reduced,reduced_lowres,lowres,winograd,winograd_lowres,int8,int8_lowres,onnxruntime,openvino,openvino_int8 \
  --baselines mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py@unfused,fused,lowres,winograd,winograd_lowres,int8,int8_lowres,openvino,openvino_int8 \
  --runs 3 --threads 2 --profile-forms fused winograd int8 --out-dir work_dirs/bench_c
