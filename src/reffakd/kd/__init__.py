"""Knowledge distillation: a method is a teacher-signal source × a loss, plus options.

The file names say the level, in the spirit of torchdistill's low/mid/high-level losses; a
module imports only from the levels below it (an import-linter contract):

=====  ==========================  ============================================================
level  module                      what it holds
=====  ==========================  ============================================================
high   :mod:`.task`                the distiller the engine trains (mdistiller's contract)
high   :mod:`.loss_criteria`       a source × a loss as one ``nn.Module`` criterion, for the
                                   engine and for a user's own loop (``KDLoss``, ``DKDLoss``...)
mid    :mod:`.method_uskd`         one method in one file: NKD's and USKD's losses and USKD's
                                   source
mid    :mod:`.source_selfkd`       the teacher-free sources made from the student itself:
                                   PS-KD, CS-KD, OLS, DLB, Zipf's LS
mid    :mod:`.source_teachers`     label smoothing, the Tf-KD virtual teacher, a trained
                                   teacher, the self-teacher
mid    :mod:`.loss_objectives`     the ``--loss`` registry: a pure loss with its weights
low    :mod:`.source_base`         the source contract: typed context in, typed record out
low    :mod:`.loss_functional`     pure loss functions on logits, formulas in the docstrings
low    :mod:`.methods`             the preset table, the only place that names methods
=====  ==========================  ============================================================
"""
