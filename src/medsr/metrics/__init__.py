"""Evaluation metrics: ``image`` (PSNR, NMSE/NRMSE, SSIM), ``lpips``, ``seg`` (Dice, IoU, Pd/Fa, ROC),
``clip`` (CLIP-S) and ``report`` (protocol header, summaries, JSON/CSV). Import the submodule you need."""
