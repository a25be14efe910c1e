"""Background work for the dock panel: one ``QgsTask`` per scene run.

The engine runs in ``run()`` (a worker thread) with ``isCanceled`` passed as its
``is_cancelled``, so cancel stops within one block and leaves no file behind. Errors are
caught into the task (``error``) and reported by the caller; layers are only created in
``finished()``'s callback, in the main thread.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsTask

from .deps import LOG_TAG


class SceneTask(QgsTask):
    """Runs ``core.engine.run_scene`` for a dict of ``SceneRequest`` fields.

    Band lists left as None are filled with the engine's guess (``describe_inputs``)
    inside the worker thread, so torch is never imported in the main thread.
    """

    def __init__(
        self,
        description: str,
        request: dict[str, Any],
        on_done: Callable[[SceneTask], None] | None = None,
    ) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.request = dict(request)
        self.on_done = on_done  # called in the main thread with this task; set None to detach
        self.result = None  # core.engine.SceneResult on success
        self.error = ""  # a message for the user on failure
        self.details = ""  # a traceback for unexpected errors (logged, not shown in a dialog)
        self.cancelled = False
        self.band_lists: dict[str, list[str] | None] = {}

    def run(self) -> bool:
        try:
            from ..core.engine import Cancelled, SceneRequest, run_scene  # lazy: imports torch
            from .inputs import guessed_band_lists

            request = dict(self.request)
            if (request.get("optical") and request.get("optical_bands") is None) or (
                request.get("sar") and request.get("sar_bands") is None
            ):
                optical, sar, _ = guessed_band_lists(request.get("optical"), request.get("sar"), request["model"])
                if request.get("optical_bands") is None:
                    request["optical_bands"] = optical
                if request.get("sar_bands") is None:
                    request["sar_bands"] = sar
            self.band_lists = {"optical": request.get("optical_bands"), "sar": request.get("sar_bands")}
            if self.isCanceled():
                raise Cancelled("cancelled")
            self.result = run_scene(
                SceneRequest(**request), progress=lambda f: self.setProgress(100.0 * f), is_cancelled=self.isCanceled
            )
            return True
        except Exception as e:  # noqa: BLE001 - everything is reported through the message bar
            if type(e).__name__ == "Cancelled":
                self.cancelled = True
            elif isinstance(e, (ValueError, FileNotFoundError, OSError)):
                self.error = str(e)
            else:
                self.error = f"unexpected error ({type(e).__name__}: {e}); details in the MoSAiC log"
                self.details = traceback.format_exc()
                QgsMessageLog.logMessage(self.details, LOG_TAG, Qgis.Critical)
            return False

    def finished(self, result: bool) -> None:  # noqa: FBT001 (QGIS API)
        if not result and not self.error:
            self.cancelled = True  # cancelled before or while running
        if self.on_done is not None:
            self.on_done(self)


class FinetuneTask(QgsTask):
    """Runs ``core.fewshot.finetune_from_polygons`` for a dict of its keyword arguments.

    The polygons are read from the label layer in the main thread (``labels``) and passed
    in as plain data, so the worker thread never touches a layer.
    """

    def __init__(self, description: str, arguments: dict[str, Any],
                 on_done: Callable[[FinetuneTask], None] | None = None) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.arguments = dict(arguments)
        self.on_done = on_done
        self.result = None  # core.fewshot.FinetuneResult on success
        self.error = ""
        self.details = ""
        self.cancelled = False
        self.log: list[str] = []

    def run(self) -> bool:
        try:
            from ..core.fewshot import FinetuneConfig, finetune_from_polygons  # lazy: imports torch
            from .inputs import guessed_band_lists

            args = dict(self.arguments)
            args["cfg"] = FinetuneConfig(**args.get("cfg", {}))
            if (args.get("optical") and args.get("optical_bands") is None) or (
                args.get("sar") and args.get("sar_bands") is None
            ):
                optical, sar, _ = guessed_band_lists(args.get("optical"), args.get("sar"), args["base"])
                args["optical_bands"] = args.get("optical_bands") or optical
                args["sar_bands"] = args.get("sar_bands") or sar
            self.result = finetune_from_polygons(
                **args, progress=lambda f: self.setProgress(100.0 * f), is_cancelled=self.isCanceled,
                log=self.log.append,
            )
            return True
        except Exception as e:  # noqa: BLE001 - everything is reported through the message bar
            if type(e).__name__ == "Cancelled":
                self.cancelled = True
            elif isinstance(e, (ValueError, FileNotFoundError, OSError)):
                self.error = str(e)
            else:
                self.error = f"unexpected error ({type(e).__name__}: {e}); details in the MoSAiC log"
                self.details = traceback.format_exc()
                QgsMessageLog.logMessage(self.details, LOG_TAG, Qgis.Critical)
            return False

    def finished(self, result: bool) -> None:  # noqa: FBT001 (QGIS API)
        if not result and not self.error:
            self.cancelled = True
        if self.on_done is not None:
            self.on_done(self)
