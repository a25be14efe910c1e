"""Evaluation: multi-label metrics, cluster coherence, linear probe."""
