"""Band conventions and readers for Sentinel-1/Sentinel-2 patch data."""
