"""OpenSTL forecast metrics for the runtime and ``gmg-infer`` (one implementation: :mod:`gmg_deploy.metrics`)."""
from gmg_deploy.metrics import all_metrics, csi, mae, mse, psnr, ssim

__all__ = ["all_metrics", "csi", "mae", "mse", "psnr", "ssim"]
