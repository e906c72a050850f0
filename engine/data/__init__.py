"""Datasets that need no network, as train/test tensors: ``load(spec_or_name) -> Dataset``.

Built in: scikit-learn's ``digits``, ``breast_cancer``, ``wine``, ``iris``; ``mnist1d``
generated locally; synthetic ``moons``, ``spirals``, ``gaussians``, ``teacher``
(teacher–student regression), ``modular`` (a + b mod p) and ``markov`` (next-token
sequences for tiny language models); the binarized tabular
benchmarks ``compas``, ``monk1``–``monk3``, ``car_evaluation``, ``bar7``; and user files
``npz`` / ``csv`` / ``parquet`` (``spec.path``, ``spec.label``) and images: ``imagefolder``
(one subfolder per class) and ``images`` (NPZ / Parquet arrays), normalised per channel. ``available()`` lists
them, ``options_of(name)`` gives each one's options and defaults, ``register`` adds
your own.
"""

from engine.data import files, images, mnist_1d, sklearn_sets, synthetic, tabular
from engine.data.dataset import Dataset, DatasetError, SourceData
from engine.data.files import inspect_table
from engine.data.registered import REGISTERED_KINDS, registered_info, use_registered_folder
from engine.data.registry import (
    DatasetName,
    available,
    check_dataset_name,
    describe_registration,
    kind_of,
    load,
    options_of,
    register,
)

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetName",
    "REGISTERED_KINDS",
    "SourceData",
    "available",
    "check_dataset_name",
    "describe_registration",
    "inspect_table",
    "kind_of",
    "load",
    "options_of",
    "register",
    "registered_info",
    "use_registered_folder",
]

_BUILTINS = {
    "mnist1d": (mnist_1d.mnist1d, "MNIST-1D: 10 classes of 1-D signals (1, 40), generated locally (Greydanus & Kobak)"),
    "digits": (sklearn_sets.digits, "8x8 handwritten digits (1, 8, 8) in [0, 1], 10 classes (scikit-learn)"),
    "breast_cancer": (sklearn_sets.breast_cancer, "Breast cancer Wisconsin: 30 features, 2 classes (scikit-learn)"),
    "wine": (sklearn_sets.wine, "Wine recognition: 13 features, 3 classes (scikit-learn)"),
    "iris": (sklearn_sets.iris, "Iris: 4 features, 3 classes (scikit-learn)"),
    "moons": (synthetic.moons, "Two interleaving half circles in 2-D, 2 classes"),
    "spirals": (synthetic.spirals, "K interleaved spiral arms in 2-D (option n_classes)"),
    "gaussians": (synthetic.gaussians, "Mixture of isotropic Gaussians, one per class"),
    "teacher": (synthetic.teacher, "Teacher-student regression: random linear or MLP teacher plus noise"),
    "modular": (synthetic.modular, "Modular addition (a + b) mod p as token pairs, for grokking (option p)"),
    "markov": (synthetic.markov, "Next-token sequences (N, T) of a random Markov chain, for tiny language models"),
    "rid_chen": (synthetic.rid_chen, "Chen's process: 10 features in U(-2.5, 2.5), the label depends on X1-X4 only"),
}

for _name, (_loader, _description) in _BUILTINS.items():
    register(_name, _loader, description=_description, kind="builtin")
for _name, (_file, _description) in tabular.TABULAR_FILES.items():
    register(_name, tabular.binarized_loader(_name), description=_description, kind="tabular")
register("npz", files.load_npz, description="Your NPZ file: x, y or x_train, y_train, x_test, y_test", kind="file")
register("csv", files.load_csv, description="Your CSV table with a label column", kind="file")
register("parquet", files.load_parquet, description="Your Parquet table with a label column", kind="file")
register("imagefolder", images.load_imagefolder, kind="file",
         description="Your folder of images, one subfolder per class (as torchvision's ImageFolder)")
register("images", images.load_images, kind="file",
         description="Your images as arrays: NPZ (N, C, H, W) or (N, H, W, C), or Parquet of PNG/JPEG bytes")
