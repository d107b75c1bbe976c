"""ReffAKD's autoencoder soft labels (AESL).

:mod:`~reffakd.aesl.similarity` (class similarity, boost, softmax), :mod:`~reffakd.aesl.soft_labels`
(the file format), :mod:`~reffakd.aesl.autoencoder` (training the autoencoder and making the
labels), :mod:`~reffakd.aesl.heatmap` and :mod:`~reffakd.aesl.source` (the ``aesl`` source, which
importing this package registers). For a user's own loop: :mod:`~reffakd.aesl.fit`
(``AESL.fit``: soft labels for any data) and :mod:`~reffakd.aesl.loss` (``ReffAKDLoss``).
"""

from reffakd.aesl import source as _registration  # noqa: F401
from reffakd.aesl.autoencoder import make_soft_labels
from reffakd.aesl.similarity import class_similarity, soft_labels_from_similarity
from reffakd.aesl.soft_labels import SoftLabels

__all__ = ["SoftLabels", "class_similarity", "make_soft_labels", "soft_labels_from_similarity"]
