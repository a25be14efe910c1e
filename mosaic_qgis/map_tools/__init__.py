"""Map tools of the MoSAiC panel."""
