# The TPU-MLIR mixed-precision tutorial (yolov3-tiny on a bm1684x) as one tpushell session.
#
# Run it from the repository root, where the data sits at ../shared/zoo:
#     tpushell --script examples/yolov3_tiny.tps
# Each command is echoed as "(tpu) command" before its output, so the output reads like a
# transcript. The script stops at the first error. Type the same lines in `tpushell` to explore:
# Tab completes commands, options, layer names and paths; `help COMMAND` explains one.

# ---- 1. The model -------------------------------------------------------------------------------
# The tutorial's model_transform step. The options describe the preprocessing the network expects:
# RGB pixels scaled to [0, 1], letterboxed into 416x416 with grey (128) borders. --output_names cuts
# the graph at the two YOLO heads, dropping the decode/NMS tail of the ONNX file.
load ../shared/zoo/yolov3-tiny/tiny-yolov3-11.onnx --model_name yolov3_tiny \
     --input_shapes [[1,3,416,416]] --scale 0.0039216,0.0039216,0.0039216 --pixel_format rgb \
     --keep_aspect_ratio --pad_value 128 --output_names transpose_output1,transpose_output

# Op names follow TPU-MLIR: <first ONNX output>_<OpType>. Calibration tables and qtables use them.
layers Conv

# ---- 2. What the float model sees -----------------------------------------------------------------
# The tutorial image: a person holding oranges. The F32 model finds the person and an orange;
# -o draws the boxes on the image.
detect ../shared/zoo/COCO2017/000000366711.jpg -o yolov3_f32.jpg

# The raw head outputs on the same image (the preprocessing above is applied to it).
infer ../shared/zoo/COCO2017/000000366711.jpg

# ---- 3. Settings and keeping the work ---------------------------------------------------------------
# The target chip decides which float types exist for layers kept out of INT8.
set chip bm1684x

# A workspace remembers the model, the settings and the journal of commands; `open` restores it.
save yolov3_tiny.tpw
journal
