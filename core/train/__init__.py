"""One training loop for pretraining, joint training and fine-tuning."""
