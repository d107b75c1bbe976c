"""AESL soft labels for a Hugging Face ``datasets`` object.

The dataset here is built in memory (no download) with the layout of the hub's image
datasets, e.g. ``load_dataset("fashion_mnist")["train"]``: an ``image`` column of PIL images
and a ``label`` column with class names. Any such dataset can be passed to ``AESL.fit``
as it is (``keys=`` names other columns).

    python examples/hf_dataset.py [--tiny]      # needs: pip install 'reffakd[hf]'
"""

import sys

import numpy as np
from PIL import Image

import reffakd

try:
    import datasets
except ImportError:
    sys.exit("this example needs the datasets package: pip install 'reffakd[hf]'")

tiny = "--tiny" in sys.argv
n = 240 if tiny else 4000
names = ["top", "upper", "lower", "bottom"]

rng = np.random.default_rng(0)
labels = np.arange(n) % len(names)
pictures = []
for label in labels:
    pixels = rng.integers(0, 90, size=(24, 24), dtype=np.uint8)
    pixels[2 + 5 * label : 6 + 5 * label, 3:21] = 230  # each class: a bar at its own height
    pictures.append(Image.fromarray(pixels))

features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
dataset = datasets.Dataset.from_dict({"image": pictures, "label": labels}, features=features)

soft_labels = reffakd.AESL.fit(dataset, num_classes=len(names), epochs=1 if tiny else 4)
print("classes:", soft_labels.meta["class_names"])
print("soft labels (row y: the target for class y):")
for name, row in zip(names, soft_labels.table.tolist(), strict=True):
    print(f"  {name:>6}: " + " ".join(f"{p:.3f}" for p in row))
