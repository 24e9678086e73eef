"""Model and data sources (s3, https, hf, ngc) and the torch-free downloader behind them."""
