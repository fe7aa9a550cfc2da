"""Training: Brevitas binarized models, the metaplastic optimizer, baselines and the continual loop."""
