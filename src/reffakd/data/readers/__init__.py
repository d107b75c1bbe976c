"""Readers for the on-disk dataset formats, one module per format.

Supported: IDX (MNIST, Fashion-MNIST; gzipped or raw), the official CIFAR-10 / CIFAR-100 python
pickles (extracted or inside their ``.tar.gz``), class-per-folder image trees (a folder, or a
``.tar``/``.tar.gz``/``.zip`` of ``train/<class>/`` and ``test/<class>/``) and the Tiny ImageNet
layout. Every reader returns uint8 images of shape (N, C, H, W) and int64 labels wrapped in
:class:`~reffakd.data.dataset.ImageSplit` / :class:`~reffakd.data.dataset.RawDataset`. Problems
with the files raise :class:`~reffakd.errors.DataError` with a one-line message that names the
file and says how to fix it.

The text readers (:mod:`~reffakd.data.readers.sst2`, :mod:`~reffakd.data.readers.agnews`,
:mod:`~reffakd.data.readers.mr`, :mod:`~reffakd.data.readers.textfile`, sharing
:mod:`~reffakd.data.readers.text_files`) return a :class:`~reffakd.data.text.RawTextDataset`.
"""

from reffakd.data.readers.cifar import read_cifar10, read_cifar100
from reffakd.data.readers.common import PathLike
from reffakd.data.readers.idx import idx_files, read_idx_dataset, read_idx_images, read_idx_labels
from reffakd.data.readers.images import read_image_folder, read_image_tar, read_split_folders
from reffakd.data.readers.tiny_imagenet import read_tiny_imagenet

__all__ = [
    "PathLike",
    "idx_files",
    "read_cifar10",
    "read_cifar100",
    "read_idx_dataset",
    "read_idx_images",
    "read_idx_labels",
    "read_image_folder",
    "read_image_tar",
    "read_split_folders",
    "read_tiny_imagenet",
]
