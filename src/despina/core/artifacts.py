"""The files of a model folder, in one place for the layers that write and read them."""

WEIGHTS = "weights.safetensors"
MODEL_CONFIG = "model.json"
PREPROCESSING = "preprocessing.json"
ONNX_FILE = "model.onnx"
INDEX_FILE = "index.faiss"
REFERENCE_FILE = "reference.json"
DETECTOR_DIR = "detector"
#: Bumped when a model folder's layout changes; serving refuses folders of another version.
FORMAT_VERSION = 2
SERVING_FILES = (MODEL_CONFIG, PREPROCESSING, ONNX_FILE, INDEX_FILE, REFERENCE_FILE)
