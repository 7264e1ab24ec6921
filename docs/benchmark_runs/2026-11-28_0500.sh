#!/usr/bin/env bash
# The 05:00, 05:13 and 05:26 runs (AMD EPYC, AVX-512 + AVX512-BF16 + AVX512-VNNI):
# three RepVGG models and both ResNet baselines, fp32, bf16 and int8 forms, and
# the mIoU check on the demo's model (bash tools/demo.sh writes it). The models,
# forms and mIoU check are those the runs' JSON records.
cd "$(dirname "$0")/../.."  # the repository root
.venv/bin/python tools/benchmark.py \
  configs/pspnet_repvgg_b1g2_cityscapes.py@unfused,backbone_fused,fused,reduced,reduced_lowres,int8,int8_lowres \
  configs/pspnet_repvgg_b1g2_fast_cityscapes.py@unfused,backbone_fused,fused,fused_cl,reduced,reduced_cl,lowres,reduced_lowres,onnxruntime,int8,int8_lowres \
  configs/pspnet_repvgg_b2_fast_cityscapes.py@unfused,fused,reduced,reduced_lowres,int8,int8_lowres \
  --baselines mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py@unfused,fused,reduced,reduced_lowres,int8,int8_lowres \
    mmseg::pspnet/pspnet_r101-d8_4xb2-40k_cityscapes-512x1024.py@unfused,fused,reduced,reduced_lowres,int8,int8_lowres \
  --miou-check configs/pspnet_repvgg_toy_cityscapes.py work_dirs/demo/epoch_40.pth \
  --runs 3 --out-dir work_dirs/benchmark
