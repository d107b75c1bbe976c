"""Training a student with a method: build and check the whole run, then train it."""

from reffakd.distill.build import StudentRun, build_run
from reffakd.distill.train import train_student

__all__ = ["StudentRun", "build_run", "train_student"]
