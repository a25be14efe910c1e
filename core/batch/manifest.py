"""The job's record of finished scenes: what a rerun trusts instead of file existence.

``OUT/manifest.json`` holds, per scene, a fingerprint of what the outputs depend on (the
inputs' paths, sizes and modification times, the model file's hash, the output options) and
the SHA-256 of every output written. A rerun skips a scene only when its fingerprint is the
same and every output still hashes to what was recorded; anything else (a missing, truncated
or replaced output, another model, changed inputs, a failure) is done again. Only the driver
writes the manifest, after each scene, by atomic replace: a killed job loses nothing recorded.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..io.hashing import sha256_file as file_sha256

MANIFEST = "manifest.json"
VERSION = 1


def fingerprint(files: Iterable[str], options: dict[str, Any], model_digest: str) -> str:
    """What a scene's outputs depend on, as one hash. Inputs by path, size and mtime: hashing
    gigabytes of imagery on every rerun would cost more than the check saves."""
    stats = []
    for f in files:
        st = os.stat(f)
        stats.append([str(Path(f).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"inputs": stats, "options": options, "model": model_digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class Manifest:
    """The scenes of ``OUT/manifest.json``; paths inside are relative to ``OUT``."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.path = self.out / MANIFEST
        self.scenes: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.path} is damaged ({e}); move it away to start the job afresh") from None
            if data.get("version") != VERSION:
                raise ValueError(f"{self.path} is of another version ({data.get('version')}); move it away")
            self.scenes = data.get("scenes", {})

    def is_complete(self, name: str, fp: str) -> bool:
        """Done before with the same fingerprint, and every output still as written."""
        rec = self.scenes.get(name)
        if not rec or rec.get("status") != "done" or rec.get("fingerprint") != fp:
            return False
        for out in rec.get("outputs", {}).values():
            p = self.out / out["path"]
            if not p.is_file() or p.stat().st_size != out["bytes"] or file_sha256(p) != out["sha256"]:
                return False
        return True

    def record(self, name: str, rec: dict[str, Any]) -> None:
        self.scenes[name] = rec
        self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": VERSION, "scenes": self.scenes}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def done(self) -> dict[str, dict[str, Any]]:
        return {n: r for n, r in self.scenes.items() if r.get("status") == "done"}
