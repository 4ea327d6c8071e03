"""Evaluation metrics: ``image`` (PSNR, NMSE/NRMSE, SSIM), ``lpips``, ``seg`` (Dice, IoU, Pd/Fa, ROC), ``clip``
(CLIP-S) and ``report`` (protocol header, summaries, JSON/CSV); ``pairing``, ``evaluation`` and ``seg_evaluation``
run them over matched files for the ``evaluate``, ``segeval`` and ``clip-score`` commands."""
