"""Model files: safetensors weights + a JSON card. Never pickle."""
