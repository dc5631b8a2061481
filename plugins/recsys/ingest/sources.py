"""A source export read block by block, for the importers (:mod:`recsys.ingest.importers`), in bounded memory.

* :class:`SourceCsv`: the header checked once, then the file in blocks of ``block_size`` bytes (pyarrow's
  streaming CSV reader), each block's values as trimmed text with their line numbers; a value that is not
  UTF-8 is read as Windows-1252 (:func:`recsys.ingest.parsing.decode_legacy`).
* :class:`Rejections`: the rejected rows' count per reason and the first line numbers of each.
* :class:`SeenRows`: which rows repeat an earlier row, by a 128-bit hash of their values (16 bytes per
  distinct row are kept, not the rows; a block's hashes are merged into the sorted ones kept).
* :class:`Spill`: rows set aside on disk under an integer key (a month, a bucket of orders) and read back
  one key at a time, in key order and, within a key, in the order they were added.
* :class:`KeyCounts`: how often each (key, value) pair occurs, merged block by block: the most frequent
  value and the median per key come from it.
"""

from __future__ import annotations

import csv
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather

from recsys.ingest import load
from recsys.ingest.parsing import DateEvidence, DateOrder, check_encoding, decode_legacy

logger = logging.getLogger(__name__)

#: bytes of a source read at a time, at first: a block is in memory as text a few times over while it is
#: converted, and pyarrow's reader reads a number of blocks ahead; a file with a longer record is read in
#: larger blocks (:meth:`SourceCsv.date_order`)
BLOCK_SIZE = 4 << 20
#: first line numbers kept per rejection reason
REPORT_EXAMPLES = 5
_HASH_KEYS = ("recsys-dupes-one", "recsys-dupes-two")  # two 64-bit hashes of a row: 128 bits


@dataclass
class Block:
    """One block of a source CSV, as read."""

    rows: pd.DataFrame  # every column as trimmed text, one row per record that has the header's fields
    line: pd.Series  # the line number of each row (header = 1)
    truncated: pd.Series  # True for a last row the file cuts off inside a quoted field
    legacy_values: int  # values that were not UTF-8 and were read as Windows-1252


class Rejections:
    """Rejected rows: the count per reason and the first :data:`REPORT_EXAMPLES` line numbers of each."""

    def __init__(self) -> None:
        self.counts = pd.Series(dtype="int64")
        self.examples = pd.DataFrame({"reason": pd.Series(dtype=str), "line": pd.Series(dtype="int64")})

    def add(self, reason: pd.Series, line: pd.Series) -> None:
        """Count the rows whose ``reason`` is not missing (the others were used)."""
        rejected = pd.DataFrame({"reason": reason, "line": line})[reason.notna()]
        if rejected.empty:
            return
        self.counts = self.counts.add(rejected["reason"].value_counts(), fill_value=0).astype("int64")
        both = pd.concat([self.examples, rejected], ignore_index=True).sort_values("line", kind="stable")
        self.examples = both.groupby("reason").head(REPORT_EXAMPLES)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def by_reason(self) -> dict[str, int]:
        return {str(name): int(count) for name, count in self.counts.sort_index().items()}

    def first_lines(self) -> dict[str, list[int]]:
        return {str(name): lines.astype(int).tolist() for name, lines in self.examples.groupby("reason")["line"]}


class SourceCsv:
    """A source CSV: its header checked on opening, its rows read in blocks by :meth:`blocks`.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is empty, its header repeats or lacks one of ``columns``; the message names the file.
    """

    def __init__(self, path: Path | str, columns: list[str], block_size: int = BLOCK_SIZE) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        check_encoding(self.path)
        with self.path.open("rb") as handle:
            first = handle.readline()
        names = [name.strip() for name in next(csv.reader([_decode(first).lstrip("\ufeff")]), [])]
        if not any(names):
            raise ValueError(f"{path}: the file is empty; it needs a header row naming the columns, then the data")
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"{path}: column(s) {duplicated} appear more than once in the header; rename them")
        missing = [column for column in columns if column not in names]
        if missing:
            raise ValueError(f"{path}: column(s) {missing} not found; the file has columns {names}")
        self.names = names
        self.block_size = block_size
        self.utf8 = load.is_utf8(self.path)
        self.rows_read = 0  # records read by the last full pass of blocks(), malformed ones included
        self.legacy_values = 0

    def date_order(self, column: str, date_format: str | None) -> DateOrder | None:
        """The day/month order of ``column``'s dates over the whole file: a first pass reading that column only.

        The pass also fits the block size: if a record does not fit in a block (or a quoted line break
        crosses a block's end), it is read again with blocks four times larger, up to
        :data:`recsys.ingest.load.BLOCK_SIZE`; the second pass reads the same blocks.

        Raises
        ------
        ValueError
            A record does not fit even then.
        """
        while True:
            evidence = DateEvidence()
            try:
                for block in self.blocks(include=[column]):
                    if not date_format:
                        evidence.add(block.rows[column])
                break
            except ValueError:
                if self.block_size >= load.BLOCK_SIZE:
                    raise
                self.block_size = min(self.block_size * 4, load.BLOCK_SIZE)
                logger.info(
                    "%s: a record does not fit in a block; reading blocks of %d bytes", self.path, self.block_size
                )
        return None if date_format else evidence.order(str(self.path))

    def blocks(self, rejections: Rejections | None = None, include: list[str] | None = None) -> Iterator[Block]:
        """The file's blocks (only the ``include`` columns, if given); malformed records go to ``rejections``.

        A record without the header's number of fields is ``unclosed_quote`` if it runs over several lines,
        else ``wrong_field_count``.

        Raises
        ------
        ValueError
            If the file cannot be read as CSV (a record longer than the block).
        """
        bad_numbers: list[int] = []  # line numbers of the records that did not parse, to number the others
        malformed: list[dict] = []  # the block's malformed records, counted after it

        def on_invalid_row(row) -> str:
            bad_numbers.append(row.number)
            malformed.append(
                {"line": row.number, "reason": "unclosed_quote" if "\n" in row.text else "wrong_field_count"}
            )
            return "skip"

        names = include or self.names
        self.rows_read, self.legacy_values, start = 0, 0, 1
        try:
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    column_names=self.names, skip_rows=1, block_size=self.block_size, use_threads=False
                ),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
                convert_options=pacsv.ConvertOptions(
                    include_columns=names,
                    column_types={name: pa.string() if self.utf8 else pa.binary() for name in names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            for batch, is_last in load.with_last(reader):
                block = self._block(batch.to_pandas(), names, start, bad_numbers, is_last and include is None)
                start += len(block.rows)
                if rejections is not None and malformed:
                    frame = pd.DataFrame(malformed)
                    rejections.add(frame["reason"], frame["line"])
                self.rows_read += len(block.rows) + len(malformed)
                malformed.clear()
                yield block
        except pa.ArrowInvalid as error:
            raise ValueError(
                f"{self.path}: cannot be read as CSV ({error}); a record longer than {self.block_size >> 20} MB (a huge"
                " value, or a quote that is never closed) causes this: fix the file and import it again"
            ) from error
        if self.legacy_values:
            logger.warning("%s: %d value(s) are not UTF-8 and were read as Windows-1252", self.path, self.legacy_values)

    def _block(self, rows: pd.DataFrame, names: list[str], start: int, bad_numbers: list, last: bool) -> Block:
        truncated = pd.Series(False, index=rows.index)
        if last and len(rows):
            truncated.iloc[-1] = load.ends_inside_quotes(self.path, rows[names[-1]].iloc[-1])
        legacy = 0
        if not self.utf8 and len(rows):
            utf8_text = rows.apply(lambda column: column.str.decode("utf-8", errors="replace"))
            is_legacy = utf8_text.apply(lambda column: column.str.encode("utf-8")).ne(rows)
            rows = utf8_text.mask(is_legacy, rows.apply(lambda column: column.map(decode_legacy)))
            legacy = int(is_legacy.to_numpy().sum())
        elif not self.utf8:
            rows = rows.astype(str)
        self.legacy_values += legacy
        line = pd.Series(load.line_numbers(bad_numbers, start, len(rows)), index=rows.index, dtype="int64")
        return Block(rows.apply(lambda column: column.str.strip()), line, truncated, legacy)


def _decode(raw: bytes) -> str:
    """UTF-8, else Windows-1252."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return decode_legacy(raw)


class SeenRows:
    """Which rows repeat an earlier one (of this block or an earlier block), by a 128-bit hash of their values."""

    def __init__(self) -> None:
        self.first = np.empty(0, dtype=np.uint64)  # the hashes' first halves, sorted
        self.second = np.empty(0, dtype=np.uint64)  # their second halves, in the same order

    def duplicated(self, rows: pd.DataFrame) -> pd.Series:
        first, second = (pd.util.hash_pandas_object(rows, index=False, hash_key=key).to_numpy() for key in _HASH_KEYS)
        repeat = pd.DataFrame({"first": first, "second": second}).duplicated().to_numpy()
        left, right = np.searchsorted(self.first, first, "left"), np.searchsorted(self.first, first, "right")
        seen = np.zeros(len(rows), dtype=bool)
        single = right - left == 1
        seen[single] = self.second[left[single]] == second[single]
        for row in np.flatnonzero(right - left > 1):  # different rows with the same first half: practically never
            seen[row] = bool((self.second[left[row] : right[row]] == second[row]).any())
        new = np.flatnonzero(~repeat & ~seen)
        new = new[np.argsort(first[new], kind="stable")]
        at = np.searchsorted(self.first, first[new])
        self.first, self.second = np.insert(self.first, at, first[new]), np.insert(self.second, at, second[new])
        return pd.Series(repeat | seen, index=rows.index)


class Spill:
    """Rows set aside on disk under an integer key, read back one key at a time (:meth:`groups`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True)
        self.parts = 0

    def add(self, frame: pd.DataFrame, key: pd.Series) -> None:
        """Set ``frame``'s rows aside under their ``key`` (non-negative integers): one file per key present."""
        for value, part in frame.groupby(key.to_numpy(), sort=False):  # a loop over keys, not rows
            folder = self.directory / f"{int(value):09d}"
            folder.mkdir(exist_ok=True)
            table = pa.Table.from_pandas(part, preserve_index=False)
            feather.write_feather(table, folder / f"{self.parts:09d}.arrow", compression="uncompressed")
        self.parts += 1

    def groups(self) -> Iterator[pd.DataFrame]:
        """The rows of each key in key order, each key's rows in the order they were added."""
        for folder in sorted(self.directory.iterdir()):
            parts = [feather.read_table(path).to_pandas() for path in sorted(folder.iterdir())]
            yield pd.concat(parts, ignore_index=True)
            shutil.rmtree(folder)


class KeyCounts:
    """How often each non-empty (key, value) pair occurs, merged block by block.

    A block's counts wait in a list until they outnumber the merged ones (then all are merged): merging
    costs about as much as the counts it adds, and memory stays within twice the distinct pairs.
    """

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value
        self.merged = pd.DataFrame(columns=[key, value, "count"])
        self.pending: list[pd.DataFrame] = []

    def add(self, rows: pd.DataFrame) -> None:
        present = rows[rows[self.value].notna() & (rows[self.value] != "")]
        self.pending.append(present.groupby([self.key, self.value]).size().rename("count").reset_index())
        if sum(len(counts) for counts in self.pending) > max(len(self.merged), 10_000):
            self._merge()

    @property
    def counts(self) -> pd.DataFrame:
        self._merge()
        return self.merged

    def _merge(self) -> None:
        if self.pending:
            both = pd.concat([self.merged, *self.pending] if len(self.merged) else self.pending, ignore_index=True)
            self.merged = both.groupby([self.key, self.value], as_index=False)["count"].sum()
            self.pending = []

    def most_frequent(self) -> pd.Series:
        """The most frequent value per key (ties: the smallest)."""
        best = self.counts.sort_values([self.key, "count", self.value], ascending=[True, False, True])
        return best.drop_duplicates(self.key).set_index(self.key)[self.value]

    def median(self) -> pd.Series:
        """The median value per key: the middle value, or the mean of the two middle values."""
        if self.counts.empty:
            return pd.Series(dtype="float64")
        counts = self.counts.sort_values([self.key, self.value], ignore_index=True)
        by_key = counts.groupby(self.key)["count"]
        total, after = by_key.transform("sum"), by_key.cumsum()
        before = after - counts["count"]

        def at(position: pd.Series) -> pd.Series:  # the value at 0-based sorted position, per key
            hit = (before <= position) & (position < after)
            return counts.loc[hit].set_index(self.key)[self.value]

        return (at((total - 1) // 2) + at(total // 2)) / 2
