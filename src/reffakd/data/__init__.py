"""Datasets: specs and catalog, locating and downloading, readers (one per on-disk format),
in-memory splits (images and text), batch loading and batch-wise augmentation."""

from reffakd.data.dataset import DataSplits as DataSplits
from reffakd.data.dataset import ImageSplit as ImageSplit
from reffakd.data.dataset import RawDataset as RawDataset
from reffakd.data.dataset import hold_out_validation as hold_out_validation
from reffakd.data.locate import load_dataset as load_dataset
from reffakd.data.paths import user_cache_dir as user_cache_dir
from reffakd.data.prepare import prepare_data as prepare_data
from reffakd.data.prepared import PreparedData as PreparedData
from reffakd.data.prepared_images import PreparedImages as PreparedImages
from reffakd.data.prepared_text import PreparedText as PreparedText
from reffakd.data.spec import DATASETS as DATASETS
from reffakd.data.spec import DatasetSpec as DatasetSpec
from reffakd.data.spec import get_spec as get_spec
from reffakd.data.text import TextSplit as TextSplit
from reffakd.data.vocab import Vocab as Vocab
