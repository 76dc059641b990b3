# The TPU-MLIR mixed-precision tutorial (yolov3-tiny on a bm1684x) as one tpushell session.
#
# Run it from the repository root, where the data sits at ../shared/zoo:
#     tpushell --script examples/yolov3_tiny.tps
# Each command is echoed as "(tpu) command" before its output, so the output reads like a
# transcript. The script stops at the first error. Type the same lines in `tpushell` to explore:
# Tab completes commands, options, layer names and paths; `help COMMAND` explains one.
# Every command takes the option names of the chapter's tool it mirrors (load = model_transform,
# calibrate = run_calibration, qtable search = run_qtable, deploy = model_deploy, detect =
# detect_yolov3), so the chapter's lines work as they read; the short forms (`load MODEL`,
# `calibrate DATASET`, `deploy FILE`, `detect IMAGE`) do too.

# ---- 1. The model -------------------------------------------------------------------------------
# The tutorial's model_transform step. The options describe the preprocessing the network expects:
# RGB pixels scaled to [0, 1], letterboxed into 416x416 with grey (128) borders. --output_names cuts
# the graph at the two YOLO heads, dropping the decode/NMS tail of the ONNX file.
load --model_name yolov3_tiny --model_def ../shared/zoo/yolov3-tiny/tiny-yolov3-11.onnx \
     --input_shapes [[1,3,416,416]] --scale 0.0039216,0.0039216,0.0039216 --pixel_format rgb \
     --keep_aspect_ratio --pad_value 128 --output_names=transpose_output1,transpose_output \
     --mlir yolov3_tiny.mlir

# Op names follow TPU-MLIR: <first ONNX output>_<OpType>. Calibration tables and qtables use them.
layers Conv

# ---- 2. What the float model sees -----------------------------------------------------------------
# The tutorial image: a person holding oranges. The F32 model finds the person and an orange;
# --output draws the boxes on the image (detect_yolov3's --model names the ONNX file; `--model f32`
# is the loaded model).
detect --model ../shared/zoo/yolov3-tiny/tiny-yolov3-11.onnx \
       --input ../shared/zoo/COCO2017/000000366711.jpg --output yolov3_onnx.jpg
detect ../shared/zoo/COCO2017/000000366711.jpg -o yolov3_f32.jpg

# The raw head outputs on the same image (the preprocessing above is applied to it).
infer ../shared/zoo/COCO2017/000000366711.jpg

# ---- 3. Calibration: INT8 thresholds from 100 images ------------------------------------------------
# run_calibration: per-tensor min/max and a histogram of |x| over the images, a KL-divergence
# threshold per tensor, tuned on 5 images. The table is the reference's text format (-o writes it).
# The same images are then the sample data of `cos` and the search (the first `samples` of them).
calibrate --dataset ../shared/zoo/COCO2017 --input_num 100 -o yolov3_cali_table

# Thresholds now show next to each layer.
layers conv1*

# ---- 4. What INT8 does ------------------------------------------------------------------------------
# The chapter's model_deploy and detect_yolov3 lines: the whole model in INT8 on a bm1684x (the
# table and chip named here are loaded / set for the session, and the command says so).
deploy --mlir yolov3_tiny.mlir --quantize INT8 --calibration_table yolov3_cali_table \
       --chip bm1684x --model yolov3_int8.bmodel
detect --model yolov3_int8.bmodel --input ../shared/zoo/COCO2017/000000366711.jpg \
       --output yolov3_int8.jpg

# cos re-checks the current plan on the sample data: output cosines, and each layer's cosine to
# F32 (the error accumulated up to it). Rows marked * are below --min_layer_cos. The tutorial types
# cosines in TPU-MLIR's 0.5+0.5*cos scale; this setting makes tpushell read and show them that way.
set cosine_scale reference
cos --sort cos --min_layer_cos 0.999

# ---- 5. Mixed precision: let the search choose the float layers --------------------------------------
# run_qtable: the layers under --min_layer_cos are tried in F16 until the outputs reach
# --expected_cos. The result becomes the session's qtable; -o writes it too. Bare `qtable` shows it.
qtable search --dataset ../shared/zoo/COCO2017 --calibration_table yolov3_cali_table \
       --min_layer_cos 0.999 --expected_cos 0.9999 --chip bm1684x -o yolov3_qtable
qtable
plot cos -o yolov3_cos.png

# ---- 6. And by hand ------------------------------------------------------------------------------
# Any layer can be set by name, glob or op type; cos recomputes only what the change affects.
set_precision conv10* F16
cos conv10* conv11* --min_layer_cos 0.999
# Not worth it? undo reverts the last edit (redo brings it back).
undo

# ---- 7. Deploy and detect ------------------------------------------------------------------------
# model_deploy: the INT8 model with the qtable's layers in F16, checked on the tutorial image.
deploy --mlir yolov3_tiny.mlir --quantize INT8 --quantize_table yolov3_qtable \
       --calibration_table yolov3_cali_table --chip bm1684x --model yolov3_mix.bmodel \
       --test_input ../shared/zoo/COCO2017/000000366711.jpg
detect --model yolov3_mix.bmodel --input ../shared/zoo/COCO2017/000000366711.jpg \
       --output yolov3_mix.jpg
# F32, INT8 and mixed side by side: which boxes each keeps, loses or gains.
detect ../shared/zoo/COCO2017/000000366711.jpg --compare f32,int8,mixed -o yolov3_compare.png

# ---- 8. Keeping the work ----------------------------------------------------------------------------
# A workspace remembers the model and data (by path), the settings, the calibration table and its
# histograms, the qtable with its undo history, the loss table and the journal; `open` restores
# all of it, and `cos` then gives the same numbers as before the save.
save yolov3_tiny.tpw
open yolov3_tiny.tpw
cos --sort cos
plot histogram conv1_leaky_LeakyRelu -o conv1_leaky_histogram.png
journal
