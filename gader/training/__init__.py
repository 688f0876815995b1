"""Training: data (P x K sampling, frame sampling, augmentation), configs, the GAR training loop."""
