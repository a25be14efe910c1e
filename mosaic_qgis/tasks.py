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


class _CoreTask(QgsTask):
    """A cancellable task around one core call: ``work()`` runs in the worker thread; errors
    become ``error`` (expected) or ``error`` + a logged traceback (unexpected), never a dialog;
    ``on_done(self)`` runs in the main thread."""

    def __init__(self, description: str, on_done: Callable[[Any], None] | None = None) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.on_done = on_done  # called in the main thread with this task; set None to detach
        self.result = None
        self.error = ""  # a message for the user on failure
        self.details = ""  # a traceback for unexpected errors (logged, not shown in a dialog)
        self.cancelled = False

    def work(self) -> None:
        raise NotImplementedError

    def _progress(self, fraction: float) -> None:
        self.setProgress(100.0 * fraction)

    @staticmethod
    def _with_file_bands(args: dict[str, Any], model: str) -> dict[str, Any]:
        """``args`` with band lists left as None filled with the names the files give (worker thread: imports torch)."""
        from .inputs import file_band_lists

        args = dict(args)
        if (args.get("optical") and args.get("optical_bands") is None) or (
            args.get("sar") and args.get("sar_bands") is None
        ):
            optical, sar, _ = file_band_lists(args.get("optical"), args.get("sar"), model)
            if args.get("optical_bands") is None:
                args["optical_bands"] = optical
            if args.get("sar_bands") is None:
                args["sar_bands"] = sar
        return args

    def run(self) -> bool:
        """True when done or stopped by Cancel: QGIS's task manager calls a task that returns False
        failed ("Task failed"), and a cancelled run did not fail; ``cancelled`` tells them apart."""
        try:
            self.work()
            return True
        except Exception as e:  # noqa: BLE001 - everything is reported through the message bar
            if type(e).__name__ == "Cancelled":
                self.cancelled = True
                return True
            if isinstance(e, (ValueError, FileNotFoundError, OSError)):
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


class SceneTask(_CoreTask):
    """Runs ``core.engine.run_scene`` for a dict of ``SceneRequest`` fields.

    Band lists left as None are filled with the names the files give (``describe_inputs``)
    inside the worker thread, so torch is never imported in the main thread.
    """

    def __init__(
        self,
        description: str,
        request: dict[str, Any],
        on_done: Callable[[SceneTask], None] | None = None,
    ) -> None:
        super().__init__(description, on_done)
        self.request = dict(request)  # result: core.engine.SceneResult on success
        self.band_lists: dict[str, list[str] | None] = {}

    def work(self) -> None:
        from ..core.engine import Cancelled, SceneRequest, run_scene  # lazy: imports torch

        request = self._with_file_bands(self.request, self.request["model"])
        self.band_lists = {"optical": request.get("optical_bands"), "sar": request.get("sar_bands")}
        if self.isCanceled():
            raise Cancelled("cancelled")
        self.result = run_scene(SceneRequest(**request), progress=self._progress, is_cancelled=self.isCanceled)


class FinetuneTask(_CoreTask):
    """Runs ``core.fewshot.finetune_from_polygons`` for a dict of its keyword arguments.

    The polygons are read from the label layer in the main thread (``labels``) and passed
    in as plain data, so the worker thread never touches a layer.
    """

    def __init__(self, description: str, arguments: dict[str, Any],
                 on_done: Callable[[FinetuneTask], None] | None = None) -> None:
        super().__init__(description, on_done)
        self.arguments = dict(arguments)  # result: core.fewshot.FinetuneResult on success
        self.log: list[str] = []

    def work(self) -> None:
        from ..core.fewshot import FinetuneConfig, finetune_from_polygons  # lazy: imports torch

        args = self._with_file_bands(self.arguments, self.arguments["base"])
        args["cfg"] = FinetuneConfig(**args.get("cfg", {}))
        self.result = finetune_from_polygons(
            **args, progress=self._progress, is_cancelled=self.isCanceled,
            log=self.log.append,
        )
