"""The MNIST image-classification task (and its offline stand-in, scikit-learn's 8x8 digits)."""
