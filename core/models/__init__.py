"""Encoders, heads and the dual-stream MoSAiC model."""
