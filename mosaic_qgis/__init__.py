"""QGIS adapters for MoSAiC: plugin class, Processing provider, GUI.

Thin by design: parse QGIS inputs, call ``core``, hand results back. No maths here,
and no heavy imports (torch) at module level.
"""
