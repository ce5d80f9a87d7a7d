"""What training runs: the digit data, augmentation, the training loop and evaluation."""
