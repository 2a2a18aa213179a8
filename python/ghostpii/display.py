"""What users read: encrypted cells print as ``<enc int64>``, sealed values as their label.

Polars prints an extension column by its storage (for ghostpii: row ids, ciphertext limbs and the
masked payload of sealed values), and has no display hook for extension types. So ghostpii wraps
the display methods of ``pl.DataFrame`` (``repr``/``str``, ``_repr_html_``, ``glimpse``) and
``pl.Series`` (``repr``/``str``): frames without ghostpii columns print exactly as before; in
frames with them, each such column is shown as text under its own dtype name, followed by a hint
to ``ghost.reveal``. Only what is printed changes; the data is untouched.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from typing import Any

import polars as pl

from ghostpii.dtypes import is_encrypted, is_sealed, is_sealed_quantile, is_sealed_rows

__all__ = ["HINT", "install", "shown"]

SHOWN = "ghostpii.shown"
HINT = "ghostpii: <enc …> cells are ciphertext; reveal sealed values with df.ghost.reveal(session)"


class ShownType(pl.BaseExtension):
    """A display-only copy of a ghostpii column: text cells under the original dtype's name."""

    def __init__(self, metadata: str | None = None, storage: pl.DataType | None = None) -> None:
        super().__init__(SHOWN, pl.String(), metadata)

    def _string_repr(self) -> str:
        return self.ext_metadata() or "ghost"


def _cells(s: pl.Series) -> pl.Series | None:
    """The text shown for a ghostpii column, or ``None`` for any other column."""
    dtype = s.dtype
    if is_sealed(dtype) or is_sealed_quantile(dtype):
        text = s.ext.storage().struct.field("label")
    elif is_encrypted(dtype) or is_sealed_rows(dtype):
        meta = dtype.meta()  # type: ignore[attr-defined]
        word = "enc" if is_encrypted(dtype) else "to reveal:"
        label = f"<{word} {meta.get('dtype', '?')}>"
        text = pl.select(pl.when(s.is_not_null()).then(pl.lit(label)).otherwise(None)).to_series()
    else:
        return None
    return text.ext.to(ShownType(dtype._string_repr())).alias(s.name)


def _has_ghost(schema: pl.Schema) -> bool:
    return any(is_encrypted(d) or is_sealed(d) or is_sealed_rows(d) or is_sealed_quantile(d) for d in schema.values())


def shown(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with every ghostpii column replaced by its display text (same shape and names)."""
    if not _has_ghost(df.schema):
        return df
    return df.with_columns([c for s in df.iter_columns() if (c := _cells(s)) is not None])


def _wide_enough(cols: list[pl.Series]) -> pl.Config:
    """Polars cuts strings at ``fmt_str_lengths`` (32 by default): widen it, while printing, just
    enough for the longest label, so labels print whole."""
    lengths = [c.str.len_chars().max() for c in cols if c.dtype == pl.String]
    longest = max((n for n in lengths if isinstance(n, int)), default=0)
    current = pl.Config.state().get("POLARS_FMT_STR_LEN")
    width = max(int(current) if current else 32, longest + 2)
    return pl.Config(fmt_str_lengths=width)


def _shown_cols(df: pl.DataFrame) -> list[pl.Series]:
    return [c.ext.storage() for c in df.iter_columns() if isinstance(c.dtype, ShownType)]


def _frame_text(orig: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(orig)
    def method(self: pl.DataFrame) -> str:
        if not _has_ghost(self.schema):
            return orig(self)
        copy = shown(self)
        with _wide_enough(_shown_cols(copy)):
            return f"{orig(copy)}\n{HINT}"

    return method


def _frame_html(orig: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(orig)
    def method(self: pl.DataFrame, *args: Any, **kwargs: Any) -> str:
        if not _has_ghost(self.schema):
            return orig(self, *args, **kwargs)
        copy = shown(self)
        with _wide_enough(_shown_cols(copy)):
            return f"{orig(copy, *args, **kwargs)}<small>{html.escape(HINT)}</small>"

    return method


def _frame_glimpse(orig: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(orig)
    def method(self: pl.DataFrame, *args: Any, **kwargs: Any) -> Any:
        if not _has_ghost(self.schema):
            return orig(self, *args, **kwargs)
        copy = shown(self)
        out = orig(copy, *args, **kwargs)
        return self if out is copy else out

    return method


def _series_text(orig: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(orig)
    def method(self: pl.Series) -> str:
        cells = _cells(self)
        if cells is None:
            return orig(self)
        with _wide_enough([cells.ext.storage()]):
            return orig(cells)

    return method


_installed = False


def install() -> None:
    """Wrap the display methods once (``import ghostpii`` does this)."""
    global _installed
    if _installed:
        return
    _installed = True
    pl.register_extension_type(SHOWN, ShownType)
    pl.DataFrame.__str__ = _frame_text(pl.DataFrame.__str__)  # type: ignore[method-assign]
    pl.DataFrame.__repr__ = _frame_text(pl.DataFrame.__repr__)  # type: ignore[method-assign]
    pl.DataFrame._repr_html_ = _frame_html(pl.DataFrame._repr_html_)  # type: ignore[method-assign]
    pl.DataFrame.glimpse = _frame_glimpse(pl.DataFrame.glimpse)  # type: ignore[method-assign]
    pl.Series.__str__ = _series_text(pl.Series.__str__)  # type: ignore[method-assign]
    pl.Series.__repr__ = _series_text(pl.Series.__repr__)  # type: ignore[method-assign]


install()
