"""Pure metric functions on tensors and arrays: ``image`` (PSNR, NMSE/NRMSE, SSIM), ``lpips``, ``seg`` (Dice, IoU,
Pd/Fa, ROC) and ``ct`` (HU windows, ROI noise, NPS). The commands that run them over files live in
:mod:`medsr.evaluation`."""
