"""After the model: YOLO decoders, detection and its comparison between models, drawing boxes,
fetching the tutorial's model."""
