"""Knowledge distillation: teacher-signal sources × losses.

:mod:`~reffakd.kd.losses` (pure loss functions), :mod:`~reffakd.kd.objectives` (the losses with
their weights, as the ``loss`` half of a method), :mod:`~reffakd.kd.signal` (the source
contract), :mod:`~reffakd.kd.sources` (label smoothing, the Tf-KD virtual teacher, a trained
teacher, the self-teacher), :mod:`~reffakd.kd.selfkd` (the teacher-free family made from the
student itself: PS-KD, CS-KD, OLS, DLB, Zipf's LS), :mod:`~reffakd.kd.methods` (the preset
table) and
:mod:`~reffakd.kd.task` (the distiller the engine trains) and :mod:`~reffakd.kd.modules` (a
source × loss as one ``nn.Module`` criterion, for the engine and for a user's own loop).
"""
