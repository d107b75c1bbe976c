"""The word-level tokenizer and vocabulary of text datasets: :func:`tokenize`, :class:`Vocab`
(built on the training texts, saved in a run directory as ``vocab.json``) and the special ids.

Tokenization is deterministic: NFC-normalise, lowercase, map the typographic apostrophe to
``'``, then split into words (runs of letters and digits of any script), the English clitics
``n't 's 're 've 'll 'd 'm`` as tokens of their own (Penn Treebank style, as SST is already
tokenized: ``don't`` -> ``do n't``, ``can't`` -> ``ca n't``, ``it's`` -> ``it 's``), and every
other visible character as a one-character token (``"3.5!"`` -> ``3 . 5 !``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from reffakd.errors import DataError, UserError
from reffakd.files import atomic_write_text

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
VOCAB_FORMAT = "reffakd-vocab"
VOCAB_VERSION = 1
VOCAB_FILE = "vocab.json"  # the vocabulary's name in a run directory

_WORD_END = r"(?![^\W_])"
_TOKEN = re.compile(
    rf"n't{_WORD_END}"  # negation clitic, also when already split off ("does n't")
    rf"|'(?:s|re|ve|ll|d|m){_WORD_END}"  # 's 're 've 'll 'd 'm
    rf"|[^\W_]+?(?=n't{_WORD_END})"  # the word before n't: do|n't, ca|n't
    r"|[^\W_]+"  # letters and digits of any script
    r"|\S"  # anything else visible, one character at a time
)


def tokenize(text: str) -> list[str]:
    """Lowercased word-level tokens of ``text`` (rules in the module docstring)."""
    normal = unicodedata.normalize("NFC", text).lower().replace("\u2019", "'")
    return _TOKEN.findall(normal)


# ---------------------------------------------------------------------------------------------
# Vocabulary


class Vocab:
    """Token <-> id map. Ids 0-3 are the specials ``<pad> <unk> <bos> <eos>``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with the specials {SPECIALS}")
        self.itos = tokens
        self.stoi = {token: i for i, token in enumerate(tokens)}
        if len(self.stoi) != len(tokens):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocab:
        """The specials, then tokens seen at least ``min_freq`` times, most frequent first.

        Ties in frequency are broken alphabetically. ``max_size`` caps the whole vocabulary,
        specials included (the rows of an embedding table); None means no cap.
        """
        if min_freq < 1:
            raise UserError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < len(SPECIALS):
            raise UserError(f"max_size must be >= {len(SPECIALS)} (the specials), got {max_size}")
        counts = Counter(token for tokens in token_lists for token in tokens)
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __hash__(self) -> int:
        return hash(tuple(self.itos))

    def index(self, token: str) -> int:
        """The id of ``token``; unknown tokens map to ``UNK``."""
        return self.stoi.get(token, UNK)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(token, UNK) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def fingerprint(self) -> str:
        """sha256 (hex) of the token list as compact UTF-8 JSON: equal iff the ids mean the same."""
        payload = json.dumps(self.itos, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as JSON (tokens in id order, and their fingerprint)."""
        document = {
            "format": VOCAB_FORMAT,
            "version": VOCAB_VERSION,
            "fingerprint": self.fingerprint(),
            "tokens": self.itos,
        }
        atomic_write_text(Path(path), json.dumps(document, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocab:
        """Read a vocabulary written by :meth:`save`; a damaged file raises DataError."""
        try:
            document = json.loads(Path(path).read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _bad_vocab(path, f"cannot be read ({' '.join(str(err).split())})") from err
        if not isinstance(document, dict) or document.get("format") != VOCAB_FORMAT:
            raise _bad_vocab(path, "is not a reffakd vocabulary file")
        tokens = document.get("tokens")
        if document.get("version") != VOCAB_VERSION:
            raise _bad_vocab(path, f"has unsupported version {document.get('version')!r}")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise _bad_vocab(path, "has no list of string tokens")
        try:
            vocab = cls(tokens)
        except ValueError as err:
            raise _bad_vocab(path, f"is inconsistent ({err})") from err
        if vocab.fingerprint() != document.get("fingerprint"):
            raise _bad_vocab(path, "does not match its recorded fingerprint (the file was altered)")
        return vocab


def _bad_vocab(path: object, problem: str) -> DataError:
    return DataError(f"vocabulary file {path} {problem}; rebuild it from the training data.")
