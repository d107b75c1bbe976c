"""Datasets: in-memory containers, readers for the on-disk formats, and the dataset catalog."""

from reffakd.data.catalog import DATASETS as DATASETS
from reffakd.data.catalog import DatasetSpec as DatasetSpec
from reffakd.data.catalog import get_spec as get_spec
from reffakd.data.catalog import load_dataset as load_dataset
from reffakd.data.catalog import user_cache_dir as user_cache_dir
from reffakd.data.dataset import DataSplits as DataSplits
from reffakd.data.dataset import ImageSplit as ImageSplit
from reffakd.data.dataset import RawDataset as RawDataset
from reffakd.data.dataset import hold_out_validation as hold_out_validation
