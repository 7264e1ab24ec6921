#!/usr/bin/env bash
# Run D (after run C, same code): full against fast dilation, B2 against R101-D8, the fast forms.
cd "$(dirname "$0")/../.."  # the repository root
.venv/bin/python tools/benchmark.py \
  configs/pspnet_repvgg_b1g2_fast_cityscapes.py@winograd \
  configs/pspnet_repvgg_b1g2_cityscapes.py@unfused,fused,winograd,winograd_lowres,int8_lowres \
  configs/pspnet_repvgg_b2_fast_cityscapes.py@unfused,fused,winograd,winograd_lowres,int8_lowres,openvino_int8 \
  configs/pspnet_repvgg_b2_cityscapes.py@fused,winograd_lowres,int8_lowres \
  --baselines mmseg::pspnet/pspnet_r101-d8_4xb2-40k_cityscapes-512x1024.py@unfused,fused,winograd_lowres,int8_lowres,openvino_int8 \
  --pair pspnet_repvgg_b2_fast_cityscapes pspnet_r101-d8_4xb2-40k_cityscapes-512x1024 \
  --runs 2 --threads 2 --profile-forms fused winograd --out-dir work_dirs/bench_d
