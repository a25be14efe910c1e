"""MoSAiC Processing algorithms, one per module; the provider lists them in ``ALGORITHMS``."""
