"""A task-group script: the mean brightness of every image in its partition.

    despina group create stats --cluster local --source path/to/images \
        --script examples/count_pixels.py --partitions 8
"""

import cv2


def process(batch, context):  # batch: this partition's file paths
    rows = []
    for i, path in enumerate(batch):
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)  # None for a file it cannot decode
        if img is None:
            rows.append({"path": path, "mean": None, "error": "unreadable"})
        else:
            rows.append({"path": path, "mean": float(img.mean()), "error": None})
        context.progress(i + 1)  # drives `despina task watch`
    return rows  # dicts, a pandas DataFrame or an Arrow table
