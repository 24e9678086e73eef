"""Model and data sources (s3, https, hf, ngc) and the downloader behind them.

Torch-free and part of the spec package, so every image (trainer, operator, serving) can run the
download step of the task it belongs to: ``python -m rtdetr_spec.sources fetch ...``.
"""
