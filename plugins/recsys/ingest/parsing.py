"""Reading what shops export: timestamps in the formats exports use, and the encodings files arrive in.

Timestamps (:func:`parse_times`), per file, vectorized:

- ISO 8601 (``2026-01-05T10:00:00Z``; no offset = UTC);
- compact dates ``YYYYMMDD`` (``20240102``), never read as an epoch;
- Unix epochs by magnitude: seconds, milliseconds, microseconds or nanoseconds;
- ``d/m/yyyy`` or ``m/d/yyyy`` (``/``, ``.`` or ``-``, with an optional ``H:MM[:SS]``): which of the two is
  decided per file from the data. A first field above 12 proves day-first (a UK export: ``13/12/2010``), a
  second field above 12 month-first (the UCI layout: ``12/13/2010``); both in one file is an error. When no
  field is above 12, the reading with more valid dates wins (``2/30`` is no date), then the one whose dates
  lie closer together if they are at least :data:`SPAN_RATIO` times closer (``12/1`` and ``12/2`` are
  1 and 2 December, not 12 January and 12 February); otherwise the file is ambiguous and refused: give
  the format (``--date-format``). (A few such values among another format are not parsed: their rows are
  rejected as unparseable.)

Encodings (:func:`check_encoding`, :func:`decode_legacy`): UTF-8 is the landing format's encoding. Bytes that
are not UTF-8 are read as Windows-1252, the encoding of spreadsheet exports on Windows (curly quotes, €),
and the five bytes it leaves undefined as Latin-1. A UTF-16 or UTF-32 file (it starts with a byte order mark)
is refused with how to convert it.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.ingest.landing import LandingError

#: how many times closer together the dates of one reading must be to settle day/month without a field > 12
SPAN_RATIO = 5
#: d/m/yyyy or m/d/yyyy with an optional time; groups 0-5: the two fields, the year, hour, minute, second
_DAY_MONTH = (
    r"^(?P<0>\d{1,2})[/.-](?P<1>\d{1,2})[/.-](?P<2>\d{4})(?:[ T](?P<3>\d{1,2}):(?P<4>\d{2})(?::(?P<5>\d{2}))?)?$"
)
_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


class AmbiguousDates(LandingError):
    """A file's dates read as day/month and as month/day alike."""


def parse_times(
    values: pd.Series, date_format: str | None = None, name: str = "the file", order: DateOrder | None = None
) -> pd.Series:
    """Timestamps (UTC) of trimmed text ``values``; NaT where a value is none of the formats above.

    Parameters
    ----------
    values : pandas.Series of str
    date_format : str, optional
        A ``strftime`` format that every value follows (``--date-format``): no detection then.
    name : str
        The file, for the error message.
    order : DateOrder, optional
        The day/month order decided on the whole file (:meth:`DateEvidence.order`), when ``values`` are one
        block of it; without it the order is decided on ``values``.

    Raises
    ------
    AmbiguousDates
        Day/month and month/day cannot be told apart, or both appear in the file.
    """
    if date_format:
        return pd.to_datetime(values, format=date_format, errors="coerce", utc=True)
    if order is None:
        order = DateEvidence().add(values).order(name)
    compact = values.str.fullmatch(r"(?:19|20)\d{6}")
    parsed = pd.to_datetime(values.where(compact), format="%Y%m%d", errors="coerce", utc=True)
    number = pd.to_numeric(values.where(values.str.fullmatch(r"\d+(?:\.\d+)?") & ~compact), errors="coerce")
    unit = np.select([number < 1e11, number < 1e14, number < 1e17], [1.0, 1e3, 1e6], 1e9)
    parsed = parsed.fillna(pd.to_datetime(number / unit, unit="s", utc=True, errors="coerce"))
    parts = _day_month_parts(values)
    slashed = parts[0].notna()
    if slashed.any() and order != "unparsed":
        first, second = parts.loc[slashed, 0].astype(int), parts.loc[slashed, 1].astype(int)
        day_first = order == "day_first"
        parsed = parsed.fillna(
            _read_day_month(parts[slashed], first if day_first else second, second if day_first else first)
        )
    rest = parsed.isna() & ~slashed & number.isna() & ~compact
    return parsed.fillna(pd.to_datetime(values.where(rest), format="ISO8601", errors="coerce", utc=True))


#: how the ``d/m/yyyy``-like values of a file are read: day first, month first, or (a few stray values among
#: another format that cannot be told apart) not at all
DateOrder = Literal["day_first", "month_first", "unparsed"]


@dataclass
class DateEvidence:
    """What decides day/month against month/day, gathered block by block over a whole file (see the module).

    ``DateEvidence().add(block_1).add(block_2)...order(name)`` decides as one look at the whole column would.
    Once a field above 12 was seen, the valid dates and spans no longer decide and are not counted further.
    """

    values: int = 0  # non-empty values
    slashed: int = 0  # values like d/m/yyyy or m/d/yyyy
    first_above_12: bool = False
    second_above_12: bool = False
    fields_equal: bool = True  # every slashed value has day == month
    valid: tuple[int, int] = (0, 0)  # valid dates read day first, month first
    low: tuple = (pd.NaT, pd.NaT)  # earliest date of each reading
    high: tuple = (pd.NaT, pd.NaT)  # latest date of each reading
    sample: str | None = None  # the first slashed value, for the error message

    def add(self, values: pd.Series) -> DateEvidence:
        """Count the evidence of one block of trimmed text ``values``; returns ``self``."""
        self.values += int(values.ne("").sum())
        parts = _day_month_parts(values).dropna(subset=[0])
        if parts.empty:
            return self
        first, second = parts[0].astype(int), parts[1].astype(int)
        self.slashed += len(parts)
        self.first_above_12 |= bool((first > 12).any())
        self.second_above_12 |= bool((second > 12).any())
        self.fields_equal &= bool((first == second).all())
        if self.sample is None:
            self.sample = "/".join(parts.iloc[0, :3].astype(str))
        if self.first_above_12 or self.second_above_12:
            return self  # decided by the fields above 12 (or refused for both): the readings no longer count
        readings = (_read_day_month(parts, first, second), _read_day_month(parts, second, first))
        self.valid = tuple(count + int(dates.notna().sum()) for count, dates in zip(self.valid, readings, strict=True))
        self.low = tuple(pd.Series([old, dates.min()]).min() for old, dates in zip(self.low, readings, strict=True))
        self.high = tuple(pd.Series([old, dates.max()]).max() for old, dates in zip(self.high, readings, strict=True))
        return self

    def order(self, name: str = "the file") -> DateOrder | None:
        """The order of the file's slashed dates (None: there are none), decided as the module says.

        Raises
        ------
        AmbiguousDates
            The file's own format (over half of its values) cannot be told apart, or has both orders.
        """
        if not self.slashed:
            return None
        try:
            return self._decide(name)
        except AmbiguousDates:
            if self.slashed * 2 > self.values:  # the file's own format: refuse the file
                raise
            return "unparsed"  # a few stray values among other formats: not parsed, rejected as such

    def _decide(self, name: str) -> DateOrder:
        if self.first_above_12 and self.second_above_12:
            raise AmbiguousDates(f"{name}: some dates are day/month and others month/day; give --date-format")
        if self.first_above_12 or self.second_above_12:
            return "day_first" if self.first_above_12 else "month_first"
        valid, spans = (
            self.valid,
            [(high - low) / pd.Timedelta(days=1) for low, high in zip(self.low, self.high, strict=True)],
        )
        if self.fields_equal or valid[1] > valid[0] or (valid[1] == valid[0] and spans[1] * SPAN_RATIO < spans[0]):
            return "month_first"
        if valid[0] > valid[1] or spans[0] * SPAN_RATIO < spans[1]:
            return "day_first"
        raise AmbiguousDates(
            f"{name}: dates like {self.sample} can be day/month or month/day and no day is above 12;"
            " give the format, e.g. --date-format '%d/%m/%Y %H:%M' (day first) or '%m/%d/%Y %H:%M' (month first)"
        )


def _day_month_parts(values: pd.Series) -> pd.DataFrame:
    """The :data:`_DAY_MONTH` groups of ``values`` (columns 0-5; missing where a value or group does not match).

    pyarrow's RE2 does it in C++ (pandas' ``str.extract`` runs the regex in Python, value by value).
    """
    groups = pc.extract_regex(pa.array(values.to_numpy(dtype=object), type=pa.string()), _DAY_MONTH).flatten()
    parts = pd.DataFrame({number: group.to_pandas() for number, group in enumerate(groups)})
    parts.index = values.index
    return parts.where(parts != "")  # an optional group that did not take part is empty


def _read_day_month(parts: pd.DataFrame, day: pd.Series, month: pd.Series) -> pd.Series:
    """The timestamps of regex ``parts`` with ``day`` and ``month`` (NaT where they make no date)."""
    text = parts[2] + "-" + month.astype(str) + "-" + day.astype(str) + " " + parts[3].fillna("0") + ":"
    text += parts[4].fillna("00") + ":" + parts[5].fillna("00")
    return pd.to_datetime(text, format="%Y-%m-%d %H:%M:%S", errors="coerce", utc=True)


def check_encoding(path: Path) -> None:
    """Refuse a UTF-16 or UTF-32 file (by its byte order mark) with how to convert it to UTF-8."""
    with Path(path).open("rb") as handle:
        head = handle.read(4)
    for bom, encoding in _BOMS.items():
        if head.startswith(bom):
            raise LandingError(
                f"{path}: the file is {encoding} (it starts with a {encoding} byte order mark); the landing files"
                f" are UTF-8: convert it, e.g. `iconv -f {encoding} -t UTF-8 {Path(path).name} > utf8.csv`"
                " (or save it from the spreadsheet as 'CSV UTF-8'), and try again"
            )


def _cp1252_else_latin1(error: UnicodeDecodeError) -> tuple[str, int]:
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("recsys_cp1252_else_latin1", _cp1252_else_latin1)


def decode_legacy(raw: bytes) -> str:
    """Bytes that are not UTF-8: Windows-1252, with Latin-1 for the bytes it leaves undefined."""
    return raw.decode("cp1252", errors="recsys_cp1252_else_latin1")
