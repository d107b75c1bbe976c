"""Text data: readers on small files in the real formats, tokenizer, vocabulary, splits, dropout."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from reffakd.data import get_spec, paths
from reffakd.data.dataset import stratified_split
from reffakd.data.readers.agnews import AGNEWS_CLASSES, clean_agnews_text, read_agnews
from reffakd.data.readers.mr import read_mr
from reffakd.data.readers.sst2 import read_sst2
from reffakd.data.readers.textfile import TextFileOptions, read_textfile
from reffakd.data.text import (
    LabelledTexts,
    RawTextDataset,
    TextSplit,
    default_max_len,
    encode_tokens,
    prepare_text_splits,
)
from reffakd.data.text_augment import TokenDropout
from reffakd.data.text_catalog import load_text_dataset, text_dataset_names
from reffakd.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab, tokenize
from reffakd.errors import DataError, UserError

REAL_DATA = os.environ.get("REFFAKD_DATA")


@pytest.fixture(autouse=True)
def no_system_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "SYSTEM_ROOTS", (tmp_path / "system",))


def one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Tokenizer


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Don't stop, it's GREAT!", ["do", "n't", "stop", ",", "it", "'s", "great", "!"]),
        ("it does n't matter", ["it", "does", "n't", "matter"]),  # SST's pre-split form
        (
            "I can't, we'll, they're, I'd, I'm, we've",
            [
                "i",
                "ca",
                "n't",
                ",",
                "we",
                "'ll",
                ",",
                "they",
                "'re",
                ",",
                "i",
                "'d",
                ",",
                "i",
                "'m",
                ",",
                "we",
                "'ve",
            ],
        ),  # fmt: skip
        ("Pi is 3.14...", ["pi", "is", "3", ".", "14", ".", ".", "."]),
        ("'dark' snake_case", ["'", "dark", "'", "snake", "_", "case"]),
        (
            "Caf\u0065\u0301\u2019s na\u00efve \u6771\u4eac",
            ["caf\u00e9", "'s", "na\u00efve", "\u6771\u4eac"],
        ),
        ("  \t\n ", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


# ---------------------------------------------------------------------------------------------
# Vocabulary

CORPUS = [["b", "a", "c"], ["a", "b", "d"], ["a"]]  # a:3 b:2 c:1 d:1


def test_vocab_order_min_freq_max_size() -> None:
    assert Vocab.build(CORPUS).itos == [*SPECIALS, "a", "b", "c", "d"]
    assert Vocab.build(CORPUS[::-1]).itos == [*SPECIALS, "a", "b", "c", "d"]  # order-free
    assert Vocab.build(CORPUS, min_freq=2).itos == [*SPECIALS, "a", "b"]
    assert Vocab.build(CORPUS, max_size=6).itos == [*SPECIALS, "a", "b"]
    assert Vocab.build(CORPUS, max_size=4).itos == list(SPECIALS)
    with pytest.raises(UserError):
        Vocab.build(CORPUS, max_size=3)
    with pytest.raises(UserError):
        Vocab.build(CORPUS, min_freq=0)


def test_vocab_specials_and_unk() -> None:
    vocab = Vocab.build(CORPUS)
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    assert [vocab.index(s) for s in SPECIALS] == [0, 1, 2, 3]
    assert vocab.encode(["a", "zzz", "d"]) == [4, UNK, 7]
    assert vocab.decode([4, 1, 7]) == ["a", "<unk>", "d"]
    assert len(vocab) == 8


def test_vocab_fingerprint() -> None:
    vocab = Vocab.build(CORPUS)
    expected = hashlib.sha256(
        json.dumps(vocab.itos, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()
    assert vocab.fingerprint() == expected
    assert Vocab([*SPECIALS, "b", "a"]).fingerprint() != Vocab([*SPECIALS, "a", "b"]).fingerprint()


def test_vocab_save_load_round_trip(tmp_path: Path) -> None:
    vocab = Vocab([*SPECIALS, "caf\u00e9", "\u6771\u4eac", '"q"'])
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocab.load(tmp_path / "vocab.json")
    assert loaded == vocab and loaded.fingerprint() == vocab.fingerprint()


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "{not json",
        lambda d: json.dumps({**d, "format": "other"}),
        lambda d: json.dumps({**d, "tokens": [*d["tokens"][:-1], "changed"]}),  # fingerprint
        lambda d: json.dumps({**d, "tokens": d["tokens"][1:]}),  # specials missing
        lambda d: json.dumps({**d, "tokens": [*d["tokens"], "a"]}),  # duplicate
        lambda d: json.dumps({**d, "version": 99}),
        lambda d: json.dumps([1, 2]),
    ],
)
def test_vocab_load_refuses_damage(tmp_path: Path, damage) -> None:  # noqa: ANN001
    path = tmp_path / "vocab.json"
    Vocab.build(CORPUS).save(path)
    path.write_text(damage(json.loads(path.read_text())))
    with pytest.raises(DataError) as err:
        Vocab.load(path)
    assert str(path) in one_line(err)


# ---------------------------------------------------------------------------------------------
# Encoding and splits


def test_encode_pads_truncates_and_counts() -> None:
    vocab = Vocab([*SPECIALS, "a", "b"])
    tokens, lengths, truncated = encode_tokens([["a"], ["b", "a", "x"], ["b", "b"]], vocab, 2)
    assert tokens.tolist() == [[4, PAD], [5, 4], [5, 5]] and tokens.dtype == torch.int64
    assert lengths.tolist() == [1, 2, 2] and truncated == 1
    tokens, lengths, truncated = encode_tokens([["a"], ["b", "a", "x"]], vocab, 4, bos_eos=True)
    assert tokens.tolist() == [[BOS, 4, EOS, PAD], [BOS, 5, 4, EOS]]
    assert lengths.tolist() == [3, 4] and truncated == 1
    with pytest.raises(UserError):
        encode_tokens([["a"]], vocab, 2, bos_eos=True)


def test_default_max_len() -> None:
    assert default_max_len(list(range(1, 101))) == 99  # ceil(0.99 * 100) = 99th smallest
    assert default_max_len([3] * 98 + [50, 60]) == 50
    assert default_max_len([500] * 10) == 128
    assert default_max_len([]) == 1


def test_text_split_validation_and_subset() -> None:
    tokens = torch.tensor([[4, 5, 0], [5, 0, 0], [4, 4, 4]])
    split = TextSplit(
        tokens, torch.tensor([2, 1, 3]), torch.tensor([0, 1, 1]), ["n", "p"], ["x", "y", "z"]
    )
    assert split.inputs is split.tokens and split.num_classes == 2 and split.max_len == 3
    part = split.subset(torch.tensor([2, 0]))
    assert part.texts == ["z", "x"] and part.labels.tolist() == [1, 0]
    assert part.tokens.tolist() == [[4, 4, 4], [4, 5, 0]] and part.lengths.tolist() == [3, 2]
    with pytest.raises(DataError, match="count mismatch"):
        TextSplit(
            tokens, torch.tensor([2, 1, 3]), torch.tensor([0, 1]), ["n", "p"], ["x", "y", "z"]
        )
    with pytest.raises(DataError, match="count mismatch"):
        TextSplit(tokens, torch.tensor([2, 1, 3]), torch.tensor([0, 1, 1]), ["n", "p"], ["x"])
    with pytest.raises(DataError, match="labels must lie"):
        TextSplit(
            tokens, torch.tensor([2, 1, 3]), torch.tensor([0, 1, 2]), ["n", "p"], ["x", "y", "z"]
        )
    with pytest.raises(DataError, match="int64"):
        TextSplit(
            tokens.float(), torch.tensor([2, 1, 3]), torch.tensor([0, 1, 1]), ["n", "p"], ["x"] * 3
        )


def unique_word_dataset() -> RawTextDataset:
    """40 train texts (20 a class), each with its own word; the test has only unseen words."""
    labels = torch.arange(40) % 2
    texts = [f"common w{i} {'good' if i % 2 else 'bad'}" for i in range(40)]
    test = LabelledTexts(["common never seen", "bad other"], torch.tensor([0, 1]))
    return RawTextDataset("toy", LabelledTexts(texts, labels), test, ["neg", "pos"], "toy")


def test_prepare_splits_is_stratified_and_vocab_sees_only_train() -> None:
    raw = unique_word_dataset()
    splits = prepare_text_splits(raw, val_fraction=0.25, split_seed=7)
    _, held = stratified_split(raw.train.labels, 0.25, 7, 2)
    assert splits.sizes() == {"train": 30, "val": 10, "test": 2}
    assert splits.val.texts == [raw.train.texts[i] for i in held.tolist()]
    assert splits.val.labels.bincount().tolist() == [5, 5]
    vocab = splits.vocab
    for text in splits.val.texts:
        assert text.split()[1] not in vocab.stoi  # words only in validation are unknown
    for row, text in zip(splits.val.tokens.tolist(), splits.val.texts, strict=True):
        assert row[:3] == [vocab.index("common"), UNK, vocab.index(text.split()[2])]
    assert splits.test.tokens[0, :3].tolist() == [vocab.index("common"), UNK, UNK]
    assert all(f"w{i}" in vocab.stoi for i in range(40) if i not in held.tolist())
    assert splits.max_len == 3 and splits.truncated == {"train": 0, "val": 0, "test": 0}
    assert splits.test.texts == raw.test.texts and splits.class_names == ["neg", "pos"]


def test_prepare_splits_options() -> None:
    raw = unique_word_dataset()
    given = Vocab([*SPECIALS, "common"])
    splits = prepare_text_splits(raw, 0.0, 0, vocab=given, max_len=2, bos_eos=False)
    assert splits.vocab is given and len(splits.val) == 0 and len(splits.train) == 40
    assert splits.train.tokens.tolist()[0] == [4, UNK] and splits.truncated["train"] == 40
    framed = prepare_text_splits(raw, 0.1, 0, bos_eos=True)
    assert framed.max_len == 5 and framed.train.tokens[0, 0] == BOS
    with pytest.raises(DataError):
        prepare_text_splits(raw, 1.0, 0)


# ---------------------------------------------------------------------------------------------
# Token dropout


def test_token_dropout_identity() -> None:
    tokens = torch.tensor([[2, 7, 8, 3, 0]])
    assert TokenDropout(0.0)(tokens, train=True) is tokens
    assert TokenDropout(0.5)(tokens, train=False) is tokens
    with pytest.raises(UserError):
        TokenDropout(1.5)


def test_token_dropout_matches_reference_and_is_seeded() -> None:
    tokens = torch.randint(0, 50, (200, 100), generator=torch.Generator().manual_seed(0))
    drop = TokenDropout(0.3)
    out = drop(tokens, train=True, generator=torch.Generator().manual_seed(5))
    again = drop(tokens, train=True, generator=torch.Generator().manual_seed(5))
    other = drop(tokens, train=True, generator=torch.Generator().manual_seed(6))
    assert torch.equal(out, again) and not torch.equal(out, other)
    mask = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(5)) < 0.3
    expected = tokens.clone()
    expected[mask & (tokens >= 4)] = UNK
    assert torch.equal(out, expected)
    specials = tokens < 4
    assert torch.equal(out[specials], tokens[specials])  # pad/bos/eos/unk untouched
    words = ~specials
    assert abs((out[words] == UNK).float().mean().item() - 0.3) < 0.01
    assert torch.equal(TokenDropout(1.0)(tokens, train=True), torch.where(words, UNK, tokens))


# ---------------------------------------------------------------------------------------------
# SST-2

SST_TRAIN = "sentence\tlabel\nhide new secretions \t0\ncontains no wit , only labored gags \t0\n"
SST_TRAIN += 'a " quoted , phrase\t1\n'
SST_DEV = "sentence\tlabel\nit 's a charming and often affecting journey . \t1\n"


def test_sst2_glue_layout(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", SST_TRAIN)
    write(tmp_path / "dev.tsv", SST_DEV)
    write(tmp_path / "test.tsv", "index\tsentence\n0\tuneasy mishmash of styles and genres .\n")
    raw = read_sst2(tmp_path)
    assert raw.train.texts == [
        "hide new secretions", "contains no wit , only labored gags", 'a " quoted , phrase',
    ]  # fmt: skip
    assert raw.train.labels.tolist() == [0, 0, 1] and raw.class_names == ["negative", "positive"]
    assert raw.test.texts == ["it 's a charming and often affecting journey ."]
    assert raw.test.labels.tolist() == [1] and "GLUE" in raw.extra["layout"]


def test_sst2_labelled_test_layout(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", SST_TRAIN)
    write(tmp_path / "dev.tsv", "sentence\tlabel\nwell-conceived \t1\n")
    write(tmp_path / "test.tsv", SST_DEV.replace("\t1", "\t0"))
    raw = read_sst2(tmp_path)
    assert raw.train.texts[-1] == "well-conceived" and raw.train.labels.tolist() == [0, 0, 1, 1]
    assert raw.test.labels.tolist() == [0] and len(raw.test) == 1


def test_sst2_zip_through_catalog(tmp_path: Path) -> None:
    archive = tmp_path / "data" / "SST-2.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("SST-2/train.tsv", SST_TRAIN)
        zf.writestr("SST-2/dev.tsv", SST_DEV)
        zf.writestr("SST-2/original/README.txt", "the original SST files")
    raw = load_text_dataset("sst2", data_dir=tmp_path / "data")
    assert (len(raw.train), len(raw.test)) == (3, 1) and raw.source == str(archive)


def test_sst2_bad_label(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", SST_TRAIN + "fine\t2\n")
    write(tmp_path / "dev.tsv", SST_DEV)
    with pytest.raises(DataError) as err:
        read_sst2(tmp_path)
    assert f"{tmp_path / 'train.tsv'}, line 5" in one_line(err)


# ---------------------------------------------------------------------------------------------
# AG News

AG_TRAIN_CSV = (
    '"3","Wall St. Bears Claw Back (Reuters)","Reuters - Short-sellers, Wall Street\'s '
    'dwindling\\band of ultra-cynics, are seeing green again."\n'
    '"1","Iraq ""major neglect""","Allawi said on Tuesday ""major neglect"" by forces..."\n'
    '"4","Space","A second\\team of rocketeers for the  #36;10 million prize, it #39;s on"\n'
    '"2","Title","to hold\\nationwide talks at \\$400 &lt;b&gt;now&lt;/b&gt;"\n'
)
AG_TEST_CSV = '"2","Sports","Phelps wins,\nagain"\n'


def test_clean_agnews_text() -> None:
    assert clean_agnews_text("to hold\\nationwide") == "to hold nationwide"
    assert clean_agnews_text("Images\\\\Yahoo costs \\$5 (#36;6), it #39;s") == (
        "Images Yahoo costs $5 ($6), it's"
    )
    assert clean_agnews_text("Chase  amp; Co. and AT amp;T, quot;hi quot;") == (
        'Chase & Co. and AT&T,"hi"'
    )
    assert clean_agnews_text("a &lt;b&gt; &amp; R&D  x #151; y") == "a <b> & R&D x\u2014 y"


def test_agnews_official_csv(tmp_path: Path) -> None:
    write(tmp_path / "train.csv", AG_TRAIN_CSV)
    write(tmp_path / "test.csv", AG_TEST_CSV)
    raw = read_agnews(tmp_path)
    assert raw.class_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert raw.train.labels.tolist() == [2, 0, 3, 1]
    assert raw.train.texts == [
        "Wall St. Bears Claw Back (Reuters) Reuters - Short-sellers, Wall Street's dwindling "
        "band of ultra-cynics, are seeing green again.",
        'Iraq "major neglect" Allawi said on Tuesday "major neglect" by forces...',
        "Space A second team of rocketeers for the $10 million prize, it's on",
        "Title to hold nationwide talks at $400 <b>now</b>",
    ]
    assert raw.test.texts == ["Sports Phelps wins, again"] and raw.test.labels.tolist() == [1]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ('"5","t","d"\n', "not 1-4"),
        ('"1","t"\n', "expected 3 columns"),
        ('"1","",""\n', "empty text"),
    ],
)
def test_agnews_bad_rows(tmp_path: Path, row: str, problem: str) -> None:
    write(tmp_path / "train.csv", AG_TEST_CSV + row)  # the first row spans lines 1-2
    write(tmp_path / "test.csv", AG_TEST_CSV)
    with pytest.raises(DataError) as err:
        read_agnews(tmp_path)
    assert f"{tmp_path / 'train.csv'}, line 3" in one_line(err) and problem in one_line(err)


def test_agnews_tsv_subset_through_catalog(tmp_path: Path) -> None:
    folder = tmp_path / "root" / "text" / "agnews"
    write(folder / "dev.tsv", '"He said ""hi"", then left"\tWorld\nIt #39;s a goal\tSports\n')
    write(folder / "test.tsv", "Stocks fall\tBusiness\nNew chip\tSci/Tech\n")
    raw = load_text_dataset("agnews", data_dir=tmp_path / "root")
    assert raw.train.texts == ['He said "hi", then left', "It's a goal"]
    assert raw.train.labels.tolist() == [0, 1] and raw.test.labels.tolist() == [2, 3]
    assert raw.extra["layout"].startswith("dev.tsv") and raw.source == str(folder)


def test_agnews_tsv_unknown_class(tmp_path: Path) -> None:
    write(tmp_path / "dev.tsv", "a\tWorld\n")
    write(tmp_path / "test.tsv", "a\tWorld\nb\tPolitics\n")
    with pytest.raises(DataError) as err:
        read_agnews(tmp_path)
    assert f"{tmp_path / 'test.tsv'}, line 2" in one_line(err) and "Politics" in one_line(err)


def test_probes_tell_text_datasets_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data root holding AG News TSVs is not taken for SST-2, and the other way round."""
    write(tmp_path / "ag" / "dev.tsv", "a\tWorld\nb\tSports\n")
    write(tmp_path / "ag" / "test.tsv", "c\tWorld\n")
    monkeypatch.setenv("REFFAKD_DATA", str(tmp_path / "ag"))
    assert load_text_dataset("agnews", download=False).train.texts == ["a", "b"]
    with pytest.raises(DataError, match="sst2 not found"):
        load_text_dataset("sst2", download=False)
    write(tmp_path / "sst" / "train.tsv", SST_TRAIN)
    write(tmp_path / "sst" / "test.tsv", SST_DEV)
    monkeypatch.setenv("REFFAKD_DATA", str(tmp_path / "sst"))
    assert len(load_text_dataset("sst2", download=False).test) == 1
    with pytest.raises(DataError, match="agnews not found"):
        load_text_dataset("agnews", download=False)


# ---------------------------------------------------------------------------------------------
# MR

MR_POS = [b"the rock is destined to be great . ", b"caf\xe9 au lait\x85 and more !"]
MR_NEG = [b"simplistic , silly and tedious . ", b"it's so laddish"]


def write_mr(folder: Path, n: int = 10) -> None:
    write(
        folder / "rt-polarity.pos",
        b"\n".join(MR_POS + [b"good %d" % i for i in range(n - 2)]) + b"\n",
    )
    write(
        folder / "rt-polarity.neg",
        b"\n".join(MR_NEG + [b"bad %d" % i for i in range(n - 2)]) + b"\n",
    )


def test_mr_latin1_and_seeded_split(tmp_path: Path) -> None:
    write_mr(tmp_path)
    raw = read_mr(tmp_path)
    texts = raw.train.texts + raw.test.texts
    assert len(texts) == 20 and "caf\u00e9 au lait\x85 and more !" in texts  # 0x85 is no line end
    assert raw.test.labels.tolist() == [0, 1] and raw.extra["test_seed"] == 0
    assert raw.extra["test_fraction"] == 0.1 and "10%" in raw.extra["test_split"]
    _, held = stratified_split(torch.tensor([0] * 10 + [1] * 10), 0.1, 0, 2)
    everything = [line.decode("latin-1").strip() for line in MR_NEG] + [
        f"bad {i}" for i in range(8)
    ]
    everything += [line.decode("latin-1").strip() for line in MR_POS] + [
        f"good {i}" for i in range(8)
    ]
    assert raw.test.texts == [everything[i] for i in held.tolist()]
    _, held3 = stratified_split(torch.tensor([0] * 10 + [1] * 10), 0.1, 3, 2)
    assert read_mr(tmp_path, seed=3).test.texts == [everything[i] for i in held3.tolist()]


def test_mr_tarball_through_catalog(tmp_path: Path) -> None:
    write_mr(tmp_path / "src" / "rt-polaritydata")
    write(tmp_path / "src" / "rt-polaritydata.README.1.0.txt", "readme")
    archive = tmp_path / "data" / "mr" / "rt-polaritydata.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "rt-polaritydata", arcname="rt-polaritydata")
        tar.add(
            tmp_path / "src" / "rt-polaritydata.README.1.0.txt",
            arcname="rt-polaritydata.README.1.0.txt",
        )
    raw = load_text_dataset("mr", data_dir=tmp_path / "data")
    assert raw.source == str(archive)
    assert raw.test.texts == read_mr(tmp_path / "src" / "rt-polaritydata").test.texts


def test_mr_empty_line(tmp_path: Path) -> None:
    write_mr(tmp_path)
    write(tmp_path / "rt-polarity.neg", b"fine\n\nalso fine\n")
    with pytest.raises(DataError) as err:
        read_mr(tmp_path)
    assert f"{tmp_path / 'rt-polarity.neg'}, line 2: empty text" in one_line(err)


# ---------------------------------------------------------------------------------------------
# Downloads (from file:// mirrors, verifying md5 and sha256)


def test_downloads_verify_checksums(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFFAKD_NO_DOWNLOAD")
    mirror = tmp_path / "mirror"
    write(mirror / "train.csv", AG_TRAIN_CSV)
    write(mirror / "test.csv", AG_TEST_CSV)
    downloads = [(f"{mirror.as_uri()}/{n}", n, md5(mirror / n)) for n in ("train.csv", "test.csv")]
    monkeypatch.setattr(get_spec("agnews"), "downloads", downloads)
    raw = load_text_dataset("agnews")
    assert len(raw.train) == 4 and raw.source == str(tmp_path / "cache" / "datasets" / "agnews")

    write_mr(tmp_path / "src" / "rt-polaritydata")
    archive = mirror / "rt-polaritydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "rt-polaritydata", arcname="rt-polaritydata")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = get_spec("mr")
    monkeypatch.setattr(spec, "downloads", [(archive.as_uri(), archive.name, "0" * 64)])
    with pytest.raises(DataError, match="checksum mismatch.*sha256"):
        load_text_dataset("mr")
    monkeypatch.setattr(spec, "downloads", [(archive.as_uri(), archive.name, sha)])
    assert len(load_text_dataset("mr").test) == 2


def test_text_specs() -> None:
    assert set(text_dataset_names()) == {"sst2", "agnews", "mr", "textfile"}
    for name in ("sst2", "agnews", "mr"):
        spec = get_spec(name)
        assert spec.modality == "text" and spec.downloads and spec.in_channels is None
        assert all(len(c) in (32, 64) and int(c, 16) >= 0 for _, _, c in spec.downloads)
    assert get_spec("agnews").class_names == AGNEWS_CLASSES and get_spec("mr").num_classes == 2
    assert get_spec("cifar10").modality == "image"
    with pytest.raises(UserError, match="not a text dataset"):
        load_text_dataset("mnist")


# ---------------------------------------------------------------------------------------------
# The user's own files

CSV_FILE = (
    "\ufefftext,label,source\n"
    '"Hello, world",pos,web\n'
    '"multi\nline ""quoted"" text",neg,web\n'
    "caf\u00e9 \U0001f600 \u6771\u4eac,pos,app\n"
    "plain,neg,app\n"
)


def test_textfile_csv_names_bom_quotes_unicode(tmp_path: Path) -> None:
    raw = read_textfile(
        write(tmp_path / "train.csv", CSV_FILE),
        write(tmp_path / "test.csv", "text,label,x\nok,neg,1\n"),
    )
    assert raw.class_names == ["neg", "pos"]
    assert raw.train.texts == [
        "Hello, world", 'multi\nline "quoted" text', "caf\u00e9 \U0001f600 \u6771\u4eac", "plain",
    ]  # fmt: skip
    assert raw.train.labels.tolist() == [1, 0, 1, 0] and raw.test.labels.tolist() == [0]


def test_textfile_tsv_without_header_integer_labels(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", "first text\t0\nsecond\t2\nthird\t1\n")
    write(tmp_path / "test.tsv", "fourth\t1\n")
    raw = read_textfile(
        tmp_path / "train.tsv", tmp_path / "test.tsv", TextFileOptions(header=False)
    )
    assert raw.class_names == ["0", "1", "2"]  # integers used as is
    assert raw.train.labels.tolist() == [0, 2, 1] and raw.test.labels.tolist() == [1]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["0", "3"], "the integer labels skip 1, 2 (found 2 values up to 3)"),
        (["0", str(10**12)], "skip 1, 2, 3, 4, 5 (found 2 values up to 1000000000000)"),
        (["0", "2", "1"] + ["neg"], "label 'neg' is a name, but line 1 has the integer label 0"),
    ],
)
def test_textfile_integer_labels_without_gaps_or_names(tmp_path: Path, labels, message) -> None:
    """Skipped integers would be classes without a sample; integers mixed with names would be
    one class per spelling."""
    rows = "".join(f"text {i}\t{label}\n" for i, label in enumerate(labels * 4))
    path = write(tmp_path / "train.tsv", rows)
    with pytest.raises(DataError, match=re.escape(message)):
        read_textfile(path, options=TextFileOptions(header=False))


def test_textfile_columns_by_name_and_index(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "id,review,y\n1,good,b\n2,bad,a\n3,fine,b\n4,poor,a\n")
    by_name = read_textfile(path, path, TextFileOptions(text_column="review", label_column="y"))
    by_index = read_textfile(path, path, TextFileOptions(text_column=1, label_column=-1))
    assert by_name.train.texts == by_index.train.texts == ["good", "bad", "fine", "poor"]
    assert by_name.train.labels.tolist() == [1, 0, 1, 0] and by_name.class_names == ["a", "b"]
    with pytest.raises(UserError, match="no column 'body'.*id, review, y"):
        read_textfile(path, None, TextFileOptions(text_column="body"))
    with pytest.raises(UserError, match="needs a header"):
        read_textfile(path, None, TextFileOptions(text_column="review", header=False))


def test_textfile_jsonl_and_single_file_split(tmp_path: Path) -> None:
    lines = [json.dumps({"review": f"text \u2028 {i}", "y": i % 2}) for i in range(20)]
    path = write(tmp_path / "all.jsonl", "\n".join(lines) + "\n\n")
    options = TextFileOptions(text_column="review", label_column="y", split_seed=3)
    raw = read_textfile(path, None, options)
    assert (len(raw.train), len(raw.test)) == (16, 4) and raw.test.labels.bincount().tolist() == [
        2,
        2,
    ]
    _, held = stratified_split(torch.arange(20) % 2, 0.2, 3, 2)
    assert raw.test.texts == [f"text \u2028 {i}" for i in held.tolist()]
    assert raw.extra == {
        "test_split": "held out 20% of every class, seed 3",
        "test_fraction": 0.2,
        "test_seed": 3,
    }
    assert read_textfile(path, None, options).test.texts == raw.test.texts


BAD_ROWS = [
    ("train.csv", 'text,label\n"a\nb",x\nc,y\nd,y,z\n', 5, "expected 2 columns, found 3"),
    ("train.csv", "text,label\na,x\n  ,y\n", 3, "empty text"),
    ("train.csv", "text,label\na,x\nb,\n", 3, "missing label"),
    ("train.csv", b"text,label\na,x\nb\xff,y\n", 3, "invalid UTF-8"),
    ("train.csv", 'text,label\na,x\n"b,y\n', 3, "malformed row"),
    ("train.csv", "text,label\na,0\nb,-1\n", 3, "negative"),
    ("train.jsonl", '{"text": "a", "label": 0}\n{"text": "b"}\n', 2, "no 'label' field"),
    ("train.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": 1.5}\n', 2, "not a string"),
    ("train.jsonl", '{"text": "a", "label": 0}\n\n{"text": ]\n', 3, "invalid JSON"),
    ("test.csv", "text,label\na,x\nb,unseen\n", 3, "does not occur in the training data"),
    ("test.csv", "text,label\na,x\nb,\n", 3, "missing label"),
]


@pytest.mark.parametrize(("name", "content", "line", "problem"), BAD_ROWS)
def test_textfile_bad_rows(
    tmp_path: Path, name: str, content: str | bytes, line: int, problem: str
) -> None:
    good = "text,label\na,x\nb,y\n"
    train = (
        write(tmp_path / name, content)
        if name.startswith("train")
        else write(tmp_path / "train.csv", good)
    )
    test = (
        write(tmp_path / name, content)
        if name.startswith("test")
        else write(tmp_path / "test.csv", good)
    )
    with pytest.raises(DataError) as err:
        read_textfile(train, test)
    where = train if name.startswith("train") else test
    assert f"{where}, line {line}" in one_line(err) and problem in one_line(err)


def test_textfile_needs_two_classes(tmp_path: Path) -> None:
    path = write(tmp_path / "one.csv", "text,label\na,x\nb,x\n")
    with pytest.raises(DataError, match="found 1 class"):
        read_textfile(path)


def test_textfile_through_catalog(tmp_path: Path) -> None:
    write(tmp_path / "folder" / "train.tsv", "text\tlabel\na\tx\nb\ty\n")
    write(tmp_path / "folder" / "test.tsv", "text\tlabel\nc\ty\n")
    raw = load_text_dataset("textfile", data_dir=tmp_path / "folder")
    assert raw.train.texts == ["a", "b"] and raw.test.labels.tolist() == [1]
    data = write(tmp_path / "data.txt", "a|x\n")
    with pytest.raises(UserError, match="unknown text file format"):
        load_text_dataset("textfile", data_dir=data)
    with pytest.raises(UserError, match="--data-dir"):
        load_text_dataset("textfile")
    with pytest.raises(DataError, match="is neither"):
        load_text_dataset("textfile", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.mark.skipif(not REAL_DATA, reason="set REFFAKD_DATA to a folder holding text/sst2 etc.")
def test_real_text_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFFAKD_DATA", REAL_DATA or "")
    sst2 = load_text_dataset("sst2", download=False)
    assert (len(sst2.train), len(sst2.test)) == (60614 + 6735, 872)
    agnews = load_text_dataset("agnews", download=False)
    assert (len(agnews.train), len(agnews.test)) == (10001, 7600)
    assert agnews.test.labels.bincount().tolist() == [1900] * 4
    mr = load_text_dataset("mr", download=False)
    assert len(mr.train) + len(mr.test) == 10662 and mr.test.labels.bincount().tolist() == [
        533,
        533,
    ]
    splits = prepare_text_splits(mr, 0.1, 0)
    assert splits.sizes() == {"train": 8636, "val": 960, "test": 1066}
    assert all(text == text.strip() and text for text in mr.train.texts[:100])
