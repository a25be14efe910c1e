"""Many scenes at once: ``python -m core classify-many`` / ``embed-many`` on a Dask cluster.

Each scene is one task running the scene engine (``engine.run_scene``) on a worker, so every
guarantee of a single run holds per scene; the driver keeps a manifest of finished scenes
(with output hashes) so a rerun resumes, then writes a VRT mosaic per output kind and a STAC
catalog of the outputs.
"""
