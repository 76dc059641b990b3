"""Session: the one mutable state that the shell, the magics and the Python API share.

    from tpushell.core import Session
    s = Session(chip="bm1684x")
    s.load("tiny-yolov3-11.onnx", input_shapes=[[1, 3, 416, 416]],
           output_names=["transpose_output1", "transpose_output"], scale=[0.0039216] * 3,
           pixel_format="rgb", keep_aspect_ratio=True, pad_value=128)
    y = s.run(s.preprocess("img.jpg"))

Methods are thin: the work is done by the modules they call.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import numpy as np

from .calibration.tables import CalibrationTable, LossTable, QTable, QTableDiff
from .errors import OptionError, StateError, TpuWarning, did_you_mean
from .graph.interpreter import run as run_graph
from .graph.ir import Graph
from .graph.preprocess import PreprocessConfig
from .progress import ProgressFn
from .quant.chips import CHIP_NAMES
from .search.precision import Edit, EditHistory

FP_TYPES = ("auto", "F16", "BF16", "F32")
COSINE_SCALES = ("true", "reference")


@dataclass
class Settings:
    """User-visible settings; the shell exposes each field with `set`, notebooks as attributes."""

    chip: str = field(default="bm1684x", metadata={"help": "target chip", "choices": CHIP_NAMES})
    fp_type: str = field(default="auto", metadata={
        "help": "float type for layers kept out of INT8 (auto = the chip's)", "choices": FP_TYPES})
    samples: int = field(default=10, metadata={
        "help": "size of the working sample set used by cos / search"})
    cosine_scale: str = field(default="true", metadata={
        "help": "show cosines as true cos or the reference's 0.5+0.5*cos", "choices": COSINE_SCALES})

    def set(self, name: str, value: Any) -> None:
        """Validated assignment: `settings.set("chip", "bm1688")`."""
        spec = {f.name: f for f in fields(self)}
        if name not in spec:
            raise OptionError(f"unknown setting '{name}'; settings are {', '.join(spec)}")
        choices = spec[name].metadata.get("choices")
        if spec[name].type in ("int", int):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise OptionError(f"setting '{name}' needs a whole number, got '{value}'") from None
            if value < 1:
                raise OptionError(f"setting '{name}' must be at least 1, got {value}")
        if choices and value not in choices:
            raise OptionError(f"setting '{name}' cannot be '{value}'; choose one of "
                              f"{', '.join(choices)}")
        setattr(self, name, value)


NO_CALIBRATION = ("no calibration yet; run `calibrate DATASET`, or load a table with "
                  "`calibrate --table FILE` (Session.load_calibration in Python)")


class Session:
    """Graph, settings, tables and caches of one working session (see module docstring)."""

    def __init__(self, chip: str = "bm1684x", *, progress: ProgressFn | None = None) -> None:
        self.settings = Settings()
        self.settings.set("chip", chip)
        self.progress = progress
        self.graph: Graph | None = None
        self.load_options: dict[str, Any] = {}   # how the model was loaded (workspaces reload it)
        self.history: list[str] = []             # command lines run by the shell / magics
        self.qtable = QTable()
        self._lowering: tuple[tuple, Any] | None = None
        self._plan: tuple[tuple, Any] | None = None
        self.dataset: str | None = None          # the working sample set's source (use_data)
        self.data_list: str | None = None
        self.edits = EditHistory()               # undo / redo of qtable edits
        self.loss_table: LossTable | None = None  # of the last search
        self._working: tuple[tuple, Any] | None = None
        self._sensitivity: dict[tuple, Any] = {}   # SensitivityTable per working set, float type
        self.calibration: CalibrationTable | None = None   # thresholds per tensor (calibrate / load)
        self.calibration_stats = None            # calibrate.Statistics of the last calibrate()
        self.thresholds_used: dict[str, float] = {}   # true cosines of the last cos / search (plot cos)

    # ---- model ---------------------------------------------------------------------------------
    @property
    def model(self) -> Graph:
        """The loaded graph; StateError when nothing is loaded yet."""
        if self.graph is None:
            raise StateError("no model loaded; run `load MODEL` first")
        return self.graph

    def load(self, model: str | os.PathLike, *, model_data: str | None = None, name: str | None = None,
             input_shapes: Sequence[Sequence[int]] | None = None,
             output_names: Sequence[str] | None = None, **preprocess: Any) -> Graph:
        """Load an .onnx, darknet .cfg (+ .weights as model_data) or .mlir model; preprocessing
        options (scale, mean, pixel_format, keep_aspect_ratio, pad_value, ...) are kept with it."""
        from .graph.loader import load_model
        graph = load_model(model, model_data=model_data, name=name, input_shapes=input_shapes,
                           output_names=output_names, preprocess=preprocess)
        self.graph = graph
        self.load_options = dict(model=os.path.abspath(model), model_data=model_data and os.path.abspath(
            model_data), name=name, input_shapes=input_shapes, output_names=output_names, **preprocess)
        return graph

    @property
    def preprocess_config(self) -> PreprocessConfig:
        cfg = self.model.preprocess
        if cfg is None:
            raise StateError(f"model '{self.model.name}' has no image preprocessing; feed arrays")
        return cfg

    def preprocess(self, images: str | os.PathLike | Sequence[str | os.PathLike]) -> np.ndarray:
        """Image file(s) -> float32 batch in the model's input layout, with its preprocessing."""
        from .graph.preprocess import preprocess_images
        paths = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        return preprocess_images(paths, self.preprocess_config)

    def feeds(self, x: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Wrap a batch for the (single) input, or pass a name -> array dict through."""
        if isinstance(x, dict):
            return x
        names = self.model.input_names
        if len(names) != 1:
            raise OptionError(f"model has {len(names)} inputs {names}; pass a dict name -> array")
        return {names[0]: np.asarray(x)}

    def run(self, x: np.ndarray | dict[str, np.ndarray], *, outputs: Sequence[str] | None = None,
            keep_all: bool = False, quantized: bool = False) -> dict[str, np.ndarray]:
        """Run the model on a batch: F32 (on onnxruntime unless every tensor is kept; see
        core/quant/engine.py), or with `quantized=True` the current quantization plan."""
        if quantized:
            return self.simulate(x, outputs=outputs, keep_all=keep_all)
        if keep_all:
            return run_graph(self.model, self.feeds(x), outputs, keep_all=True)
        from .quant.engine import fast_run
        return fast_run(self.model, self.feeds(x), outputs)

    # ---- calibration (core/calibration/calibrate.py, core/calibration/tables.py) -------------------------------------------
    def calibrate(self, dataset: str | os.PathLike | None = None, *,
                  data_list: str | os.PathLike | None = None, input_num: int = 0, method: str = "kl",
                  tune_num: int = 5, tune_list: str | os.PathLike | None = None,
                  histogram_bin_num: int = 2048, tune_steps: int | None = None,
                  all_methods: bool = False, histogram: str | None = None) -> CalibrationTable:
        """Thresholds for every tensor from a dataset folder or list (run_calibration.py); KLD with
        auto-tuning on the first `tune_num` samples by default, or max, percentile9999, mse,
        aciq_gauss, aciq_laplace. Sets `self.calibration`; `all_methods` (slower) keeps every
        method's statistics so `plot_histogram` can compare them. The default histogram and
        tuning are TPU-MLIR 1.30.2's (its tables come out equal); `histogram="two_pass"` with
        `tune_steps=20` is v1.3's order-independent calibration."""
        from .calibration.calibrate import DEFAULT_HISTOGRAM, DEFAULT_TUNE_STEPS, calibrate_samples
        histogram = DEFAULT_HISTOGRAM if histogram is None else histogram
        tune_steps = DEFAULT_TUNE_STEPS if tune_steps is None else tune_steps
        from .calibration.dataset import select_samples
        samples = select_samples(dataset, data_list, input_num)
        tune = select_samples(data_list=tune_list) if tune_list is not None else None
        table, stats = calibrate_samples(self.model, samples, method=method, tune_samples=tune,
                                         tune_num=tune_num, bins=histogram_bin_num,
                                         tune_steps=tune_steps, all_methods=all_methods,
                                         histogram=histogram, progress=self.progress)
        # set only after the work (an interrupted calibration changes nothing)
        if self.dataset is None and self.data_list is None:     # checks and searches use it too
            self.use_data(dataset, data_list=data_list)
        self.calibration, self.calibration_stats = table, stats
        return table

    def load_calibration(self, path: str | os.PathLike) -> CalibrationTable:
        """Read a calibration table (ours or the reference's); every float tensor of the loaded model
        needs a row, else CalibrationError naming the file and the missing tensors."""
        from .calibration.calibrate import check_table
        from .calibration.tables import read_calibration_table, same_rows
        table = read_calibration_table(path)
        if self.graph is not None:
            check_table(self.graph, table)
        # the file of the last calibrate (run_qtable's --calibration_table in the tutorial)
        # keeps that calibration's histograms; any other table has none
        if not same_rows(self.calibration, table):
            self.calibration_stats = None
        self.calibration = table
        return table

    def save_calibration(self, path: str | os.PathLike) -> str:
        """Write the session's calibration table (v1.3 format, atomically); returns the path."""
        from .calibration.tables import write_calibration_table
        if self.calibration is None:
            raise StateError(NO_CALIBRATION)
        write_calibration_table(path, self.calibration)
        return os.fspath(path)

    def plot_histogram(self, tensor: str):
        """Figure: `tensor`'s |x| histogram from the last calibrate(), with |min|, max, each
        collected method's threshold and the table's threshold."""
        from .calibration.calibrate import method_thresholds
        from .plots.calibration import histogram_figure
        stats = self.calibration_stats
        if stats is None:
            raise StateError("no calibration statistics; run `calibrate DATASET` first (a loaded "
                             "table has no histograms)")
        if tensor not in stats.tensors:
            raise OptionError(f"no calibrated tensor '{tensor}'{did_you_mean(tensor, stats.tensors)}")
        if stats.tensors[tensor].hist is None:
            raise StateError(f"the last calibration ({', '.join(stats.methods)}) kept no histogram "
                             f"of |x|; calibrate with --cali_method kl or --all_methods to plot it")
        table = self.calibration
        row = table.rows.get(tensor) if table is not None else None
        tuned = table is not None and table.header.get("tune number", "0") not in ("", "0")
        return histogram_figure(stats.tensors[tensor], method_thresholds(stats, tensor),
                                table=row.threshold if row is not None else None,
                                table_label="table (tuned)" if tuned else "table")

    def plot_calibration(self):
        """Figure: threshold / absmax of every tensor of the calibration table."""
        from .plots.calibration import table_figure
        if self.calibration is None:
            raise StateError(NO_CALIBRATION)
        return table_figure(self.calibration)

    # ---- detection (core/vision/detect.py) ---------------------------------------------------------------
    def detector(self, model: str | os.PathLike = "f32"):
        """A `core.vision.detect.Detector`: "f32" = the loaded model, "int8" = its all-INT8 plan,
        "mixed" = the plan with the current qtable, or a model file (.onnx/.cfg/.mlir)."""
        from .vision.detect import graph_detector, graph_heads, open_detector
        kind = model.lower() if isinstance(model, str) else None
        if kind == "f32":
            return graph_detector(self.model, name="F32", preprocess=self.preprocess_config)
        if kind not in ("int8", "mixed"):
            return open_detector(model)
        from .calibration.tables import QTable
        from .quant.simulate import simulate
        from .vision.yolo import YoloSpec
        if kind == "mixed" and not len(self.qtable):
            raise StateError("detect with model 'mixed' needs a qtable: load one or run a search "
                             "first (without one, mixed is the INT8 model)")
        plan = self.plan("INT8") if kind == "mixed" else \
            self.lowerer().plan("INT8", QTable(), self.settings.fp_type)
        heads = graph_heads(self.model, YoloSpec.for_graph(self.model))
        return graph_detector(self.model, name="INT8" if kind == "int8" else "mixed",
                              preprocess=self.preprocess_config,
                              forward=lambda x: simulate(plan, self.feeds(x), heads))

    def detect(self, image: str | os.PathLike, *, model: str | os.PathLike = "f32",
               score_thres: float | None = None, iou_thres: float | None = None,
               names: Sequence[str] | None = None):
        """YOLO detections on one image: boxes (original pixels) with class names and scores."""
        from .vision.detect import detect_images
        return detect_images(self.detector(model), [image], score_thres=score_thres,
                             iou_thres=iou_thres, names=names)[0]

    def compare_detections(self, image: str | os.PathLike,
                           models: Sequence[str | os.PathLike] | None = None, *,
                           score_thres: float | None = None, iou_thres: float | None = None,
                           names: Sequence[str] | None = None):
        """Side by side: each model's detections on `image` against the first model's
        (`plots.detection.detection_figure` draws them). Default: f32, int8, and mixed when a qtable is set."""
        from .vision.detect import compare_detections
        if models is None:
            models = ["f32", "int8"] + (["mixed"] if len(self.qtable) else [])
        found = {}
        for m in models:
            result = self.detect(image, model=m, score_thres=score_thres, iou_thres=iou_thres,
                                 names=names)
            found[result.model] = result.detections
        return compare_detections(image, found)

    # ---- quantization: plan, simulation, deploy ----------------------------------------------
    def load_qtable(self, path: str | os.PathLike) -> QTable:
        """Read a qtable and make it current; its op names and modes are checked against the
        model and chip first (errors name the file and line; the current qtable is kept)."""
        from .calibration.tables import read_qtable
        from .quant.lowering import resolve_modes
        q = read_qtable(path)
        resolve_modes(self.model, self.settings.chip, "INT8", q)
        self._edit(q, f"load {os.fspath(path)}")
        return q

    def lowerer(self, asymmetric: bool = False):
        """The Lowerer of the current model, calibration table and chip (cached)."""
        from .quant.lowering import Lowerer
        table = getattr(self, "calibration", None)
        key = (id(self.model), id(table), self.settings.chip, asymmetric)
        if self._lowering is None or self._lowering[0] != key:
            self._lowering = (key, Lowerer(self.model, table, self.settings.chip,
                                           asymmetric=asymmetric))
        return self._lowering[1]

    def plan(self, mode: str = "INT8", *, asymmetric: bool = False):
        """The current QuantPlan: `mode` for the whole model, the qtable per op, the chip and
        fp_type settings (INT8 symmetric unless `asymmetric`); cached until any of them (or the
        calibration) changes."""
        lw = self.lowerer(asymmetric)
        key = (id(lw), mode, self.settings.fp_type, tuple(self.qtable.items()))
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, lw.plan(mode, self.qtable, self.settings.fp_type))
        return self._plan[1]

    def simulate(self, x: np.ndarray | dict[str, np.ndarray], *, outputs: Sequence[str] | None = None,
                 keep_all: bool = False, codes: bool = False, mode: str = "INT8") -> dict[str, np.ndarray]:
        """Run a batch through the current plan: float32 values (integer codes with `codes`)."""
        from .quant.simulate import simulate
        return simulate(self.plan(mode), self.feeds(x), outputs, keep_all=keep_all, codes=codes)

    def deploy(self, path: str | os.PathLike, quantize: str = "INT8", *, asymmetric: bool = False,
               **options: Any):
        """Write the current plan (`quantize` for the whole model, the qtable per op) as a model
        file: tpushell's simulator container (.bmodel/.cvimodel/.tpsm) or a QDQ .onnx. Options
        as core.quant.deploy.deploy: test_input, test_reference, tolerance, compare_all, excepts."""
        from .quant.deploy import deploy
        return deploy(self.plan(quantize, asymmetric=asymmetric), path, progress=self.progress,
                      **options)

    # ---- mixed precision: edits, re-check, search (core/search/) --------
    def use_data(self, dataset: str | os.PathLike | None = None, *,
                 data_list: str | os.PathLike | None = None) -> None:
        """Where the working sample set comes from (a folder or a list file): its first
        `settings.samples` samples in the reference's order (sorted, shuffled with seed 1684)."""
        from .calibration.dataset import select_samples
        select_samples(dataset, data_list, input_num=1)        # errors now, naming the source
        self.dataset = os.fspath(dataset) if dataset else None
        self.data_list = os.fspath(data_list) if data_list else None

    def working_set(self, samples: int | None = None) -> dict[str, np.ndarray]:
        """The first `samples` (default: the setting) samples of the data, as one batch."""
        from .calibration.dataset import load_batches, select_samples
        if self.dataset is None and self.data_list is None:
            raise StateError("no sample data for checks and searches: calibrate on a dataset, or "
                             "give a folder with `data FOLDER` (Session.use_data in Python)")
        wanted = samples or self.settings.samples
        picked = select_samples(self.dataset, self.data_list)          # all, in the reference's order
        if wanted > len(picked):
            warnings.warn(TpuWarning(f"{wanted} samples wanted (setting 'samples') but "
                                     f"{self.dataset or self.data_list} has {len(picked)}; using all"))
        picked = picked[:wanted]
        return next(iter(load_batches(picked, self.model, batch_size=len(picked))))

    def evaluator(self):
        """The incremental evaluator (core/search/evaluator.py) of the current model, calibration,
        chip and working set; its cached values survive precision edits."""
        from .search.evaluator import Evaluator
        key = (id(self.lowerer()), self.dataset, self.data_list, self.settings.samples)
        if self._working is None or self._working[0] != key:
            # interactive checks take their F32 reference from onnxruntime (first cos 2x faster)
            self._working = (key, Evaluator(self.model, self.working_set(), f32_engine=True))
        return self._working[1]

    def set_precision(self, layers: str | Sequence[str], mode: str) -> Edit:
        """Set ops to `mode` (INT8, F16, BF16, F32 as the chip allows) by op name, glob or op
        type; INT8 removes the override. Undoable; an unknown name suggests the closest ones."""
        from .quant.chips import check_mode, get_chip
        from .search.precision import select_ops, with_modes
        m = check_mode(get_chip(self.settings.chip), mode, "precision")
        selectors = [layers] if isinstance(layers, str) else list(layers)
        ops = list(dict.fromkeys(op for sel in selectors for op in select_ops(self.model, sel)))
        after, what = with_modes(self.qtable, ops, m), f"set {' '.join(selectors)} {m}"
        if dict(after.modes) == dict(self.qtable.modes):      # no change: not an undo step
            return Edit(what, self.qtable, self.qtable)
        return self._edit(after, what)

    def _edit(self, qtable: QTable, what: str) -> Edit:
        edit = self.edits.record(self.qtable, qtable, what)
        self.qtable = qtable
        return edit

    def undo(self) -> Edit:
        """Undo the last qtable edit (set_precision, a search, a qtable load)."""
        edit = self.edits.undo()
        self.qtable = edit.before
        return edit

    def redo(self) -> Edit:
        """Redo the last undone qtable edit."""
        edit = self.edits.redo()
        self.qtable = edit.after
        return edit

    def check(self, *, own: bool = False, layers: str | Sequence[str] | None = None,
              min_layer_cos: float | None = None, scale: str = "true"):
        """Output and per-layer cosines to F32 (true cosines; shown in the `cosine_scale`
        setting) of the current plan on the working set; only what changed is recomputed.
        `own` adds each layer's own error (its inputs taken from F32); `layers` (names, globs or
        op types) limits the layers; layers under `min_layer_cos` (in `scale`: true, or
        reference for 0.5+0.5*cos) are marked."""
        from .search.precision import select_ops
        from .search.space import check_cos, to_true_cos
        if min_layer_cos is not None:
            min_layer_cos = to_true_cos(check_cos(min_layer_cos, "min_layer_cos"), scale)
        ev = self.evaluator()
        ev.set_plan(self.plan())
        picked = None
        if layers is not None:
            selectors = [layers] if isinstance(layers, str) else list(layers)
            chosen = {op for sel in selectors for op in select_ops(self.model, sel)}
            picked = [op for op in self.model.op_names if op in chosen]      # in model order
        return ev.check(own=own, layers=picked, min_layer_cos=min_layer_cos,
                        scale=self.settings.cosine_scale)

    def search_qtable(self, expected_cos: float = 0.99, min_layer_cos: float = 0.99, *,
                      method: str = "reference", samples: int | None = None,
                      compare_layers: str | None = None, time_budget: float | None = None,
                      apply: bool = True, low_memory: bool = False, scale: str = "true",
                      max_float: int | None = None, start: str | None = None):
        """Search the layers to keep in float so the outputs reach `expected_cos` (cosines to
        F32; `scale` reference takes the tutorial's 0.5+0.5*cos numbers, e.g. 0.9999 and 0.999,
        the result is in true cosines). `method` is `reference` (the tutorial's run_qtable walk) or
        `greedy` (fewer float layers); `samples` defaults to the working set. The found qtable
        becomes current (undoable) unless `apply` is False; the loss table is kept.
        `max_float` caps the float layers (reference default: a quarter of the ops).
        `low_memory` runs on a separate evaluator that forgets values as the walk passes them
        (for large sample counts; the session's cached values are not reused or kept).
        `sensitivity` reaches any target the all-float plan reaches: it is ordered by the
        `sensitivity` table when one was measured on these samples (else by each layer's own
        error), and with `start="pattern"` starts from the known-head pattern."""
        from .quant.chips import resolve_fp_type
        from .search import run_search
        from .search.evaluator import SPARE_BYTES, Evaluator
        from .search.space import SearchSpace, check_cos, parse_compare_layers, to_true_cos
        expected = to_true_cos(check_cos(expected_cos, "expected_cos"), scale)
        min_layer = to_true_cos(check_cos(min_layer_cos, "min_layer_cos"), scale)
        n = samples or self.settings.samples
        own_set = n == self.settings.samples and not low_memory
        # the reference walk floats few layers: its values are not worth packing; the
        # sensitivity search compares own errors, which needs every F32 value kept
        ev = self.evaluator() if own_set else Evaluator(
            self.model, self.working_set(n), lean=method != "sensitivity",
            spare_bytes=0 if method != "sensitivity" else SPARE_BYTES, pack=method != "reference")
        lw = self.lowerer()
        fp = resolve_fp_type(lw.chip, self.settings.fp_type)
        space = SearchSpace(ev, lambda q: lw.plan("INT8", q, fp), fp,
                            parse_compare_layers(compare_layers), release=not own_set,
                            progress=self.progress)
        if start not in (None, "int8", "pattern"):
            raise OptionError(f"search start '{start}' is not known; use int8 or pattern")
        result = run_search(space, method, expected_cos=expected, min_layer_cos=min_layer,
                            time_budget=time_budget, max_float=max_float,
                            ranking=self._measured_ranking(n, fp),
                            start=self.head_pattern() if start == "pattern" else None)
        result.loss_table.chip = self.settings.chip
        self.loss_table = result.loss_table
        if apply:
            self._edit(result.qtable, f"{method} search")
        return result

    def sensitivity(self, *, samples: int | None = None, layers: str | Sequence[str] | None = None,
                    workers: int | None = None):
        """Per layer, the output cosine with only that layer INT8 (others F32) and with only
        that layer in float (others INT8), on the working set (or the first `samples`); rows
        are cached: a second call, or one after an interrupted run, measures only what is
        missing. `layers` (names, globs, op types) limits the rows; shown in `cosine_scale`."""
        from .quant.chips import resolve_fp_type
        from .search.precision import select_ops
        from .search.sensitivity import SensitivityTable, layer_sensitivity
        ev, key = self._search_evaluator(samples)
        lw = self.lowerer()
        fp = resolve_fp_type(lw.chip, self.settings.fp_type)
        ev.set_plan(lw.plan("INT8", None, fp))
        modes = ev.plan.op_modes
        ops = [op for op in self.model.op_names if modes.get(op) == "INT8"]
        if layers is not None:
            selectors = [layers] if isinstance(layers, str) else list(layers)
            chosen = {op for sel in selectors for op in select_ops(self.model, sel)}
            ops = [op for op in ops if op in chosen]
        before = self._sensitivity.get(key + (fp,))
        known = dict(before.rows) if before is not None else {}
        table = layer_sensitivity(ev, lambda mode, q: lw.plan(mode, q, fp), ops, fp, known=known,
                                  progress=self.progress, workers=workers)
        known.update(table.rows)
        self._sensitivity[key + (fp,)] = SensitivityTable(known, table.int8_cos, fp, table.samples,
                                                          layers=list(known))
        table.scale = self.settings.cosine_scale
        return table

    def _measured_ranking(self, samples: int, fp: str) -> list[str] | None:
        """Layers most sensitive first, from the sensitivity rows measured on these samples
        with this float type (None when none were)."""
        key = (id(self.lowerer()), self.dataset, self.data_list, samples, fp)
        table = self._sensitivity.get(key)
        return table.ranked() if table is not None else None

    def _search_evaluator(self, samples: int | None):
        """The evaluator of `samples` (default: the working set's, cached) and its cache key."""
        from .search.evaluator import Evaluator
        n = samples or self.settings.samples
        key = (id(self.lowerer()), self.dataset, self.data_list, n)
        if n == self.settings.samples:
            return self.evaluator(), key
        return Evaluator(self.model, self.working_set(n), lean=True, spare_bytes=0), key

    def head_pattern(self) -> list[str]:
        """The model's known-head pattern, in model order: the ops after the last activation on
        the way to the outputs (a YOLO decode tail, as the reference's shape_pattern_qtable)."""
        from .search.patterns import output_tail
        return output_tail(self.model)

    def save_qtable(self, path: str | os.PathLike) -> str:
        """Write the current qtable in the reference's v1.3 format (atomically); returns the path."""
        from .calibration.tables import write_qtable
        from .quant.chips import get_chip, resolve_fp_type
        fp = resolve_fp_type(get_chip(self.settings.chip), self.settings.fp_type)
        write_qtable(path, self.qtable, chip=self.settings.chip, mix_mode=fp)
        return os.fspath(path)

    def diff_qtables(self, a: QTable | str | os.PathLike | None = None,
                     b: QTable | str | os.PathLike | None = None) -> QTableDiff:
        """Per-op differences of two qtables (objects or files; None is the current one)."""
        from .calibration.tables import diff_qtables, read_qtable

        def table(q):
            if q is None:
                return QTable(dict(self.qtable.modes), path="current qtable")
            return q if isinstance(q, QTable) else read_qtable(q)
        return diff_qtables(table(a), table(b))
