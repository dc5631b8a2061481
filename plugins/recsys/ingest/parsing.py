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
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.ingest.landing import LandingError

#: how many times closer together the dates of one reading must be to settle day/month without a field > 12
SPAN_RATIO = 5
_DAY_MONTH = r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$"
_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


class AmbiguousDates(LandingError):
    """A file's dates read as day/month and as month/day alike."""


def parse_times(values: pd.Series, date_format: str | None = None, name: str = "the file") -> pd.Series:
    """Timestamps (UTC) of trimmed text ``values``; NaT where a value is none of the formats above.

    Parameters
    ----------
    values : pandas.Series of str
    date_format : str, optional
        A ``strftime`` format that every value follows (``--date-format``): no detection then.
    name : str
        The file, for the error message.

    Raises
    ------
    AmbiguousDates
        Day/month and month/day cannot be told apart, or both appear in the file.
    """
    if date_format:
        return pd.to_datetime(values, format=date_format, errors="coerce", utc=True)
    compact = values.str.fullmatch(r"(?:19|20)\d{6}")
    parsed = pd.to_datetime(values.where(compact), format="%Y%m%d", errors="coerce", utc=True)
    number = pd.to_numeric(values.where(values.str.fullmatch(r"\d+(?:\.\d+)?") & ~compact), errors="coerce")
    unit = np.select([number < 1e11, number < 1e14, number < 1e17], [1.0, 1e3, 1e6], 1e9)
    parsed = parsed.fillna(pd.to_datetime(number / unit, unit="s", utc=True, errors="coerce"))
    parts = values.str.extract(_DAY_MONTH)
    slashed = parts[0].notna()
    if slashed.any():
        try:
            parsed = parsed.fillna(_day_month(parts[slashed], name))
        except AmbiguousDates:
            if slashed.sum() * 2 > values.ne("").sum():  # the file's own format: refuse the file
                raise  # else a few stray values among other formats: not parsed, rejected as such
    rest = parsed.isna() & ~slashed & number.isna() & ~compact
    return parsed.fillna(pd.to_datetime(values.where(rest), format="ISO8601", errors="coerce", utc=True))


def _day_month(parts: pd.DataFrame, name: str) -> pd.Series:
    """The ``d/m/yyyy`` or ``m/d/yyyy`` timestamps of regex ``parts``, the order decided as the module says."""
    first, second = parts[0].astype(int), parts[1].astype(int)

    def read(day: pd.Series, month: pd.Series) -> pd.Series:
        text = parts[2] + "-" + month.astype(str) + "-" + day.astype(str) + " " + parts[3].fillna("0") + ":"
        text += parts[4].fillna("00") + ":" + parts[5].fillna("00")
        return pd.to_datetime(text, format="%Y-%m-%d %H:%M:%S", errors="coerce", utc=True)

    day_first, month_first = bool((first > 12).any()), bool((second > 12).any())
    if day_first and month_first:
        raise AmbiguousDates(f"{name}: some dates are day/month and others month/day; give --date-format")
    if day_first or month_first:
        return read(first, second) if day_first else read(second, first)
    as_day_first, as_month_first = read(first, second), read(second, first)
    valid = [dates.notna().sum() for dates in (as_day_first, as_month_first)]
    spans = [(dates.max() - dates.min()) / pd.Timedelta(days=1) for dates in (as_day_first, as_month_first)]
    if (first == second).all() or valid[1] > valid[0] or (valid[1] == valid[0] and spans[1] * SPAN_RATIO < spans[0]):
        return as_month_first
    if valid[0] > valid[1] or spans[0] * SPAN_RATIO < spans[1]:
        return as_day_first
    sample = "/".join(parts.iloc[0, :3].astype(str))
    raise AmbiguousDates(
        f"{name}: dates like {sample} can be day/month or month/day and no day is above 12;"
        " give the format, e.g. --date-format '%d/%m/%Y %H:%M' (day first) or '%m/%d/%Y %H:%M' (month first)"
    )


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
