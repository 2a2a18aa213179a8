"""Extension types of encrypted columns and sealed results, for Polars and pyarrow."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pyarrow as pa

ENCRYPTED = "ghostpii.encrypted"
SEALED = "ghostpii.sealed"
SEALED_ROWS = "ghostpii.sealed_rows"
SEALED_QUANTILE = "ghostpii.sealed_quantile"


class _GhostExtension(pl.BaseExtension):
    """Common behaviour: parsed metadata and short names."""

    def meta(self) -> dict[str, Any]:
        """The column metadata (format version, dataset, column, epoch, dtype, scale, bounds, facets)."""
        md = self.ext_metadata()
        return json.loads(md) if md else {}


class EncryptedType(_GhostExtension):
    """Polars dtype of an encrypted column (``ghostpii.encrypted``)."""

    def __init__(self, metadata: str, storage: pl.DataType) -> None:
        super().__init__(ENCRYPTED, storage, metadata)

    def _string_repr(self) -> str:
        return f"ghost[{self.meta().get('dtype', '?')}]"


class SealedType(_GhostExtension):
    """Polars dtype of sealed aggregates: they print as ``<sealed sum(x) over n rows>``."""

    #: Format 2 (docs/sealed-partials.md): typed fields, a masked u128 per value as 16 bytes.
    STORAGE = pl.Struct(
        {
            "label": pl.String,
            "format": pl.UInt8,
            "op": pl.String,
            "meta": pl.String,
            "terms": pl.Binary,
            "masked": pl.Binary,
            "n": pl.UInt64,
            "rids": pl.Binary,
            "repeats": pl.Binary,
            "params": pl.Binary,
        }
    )
    #: Format 1 (still read): a label and the JSON payload of the value.
    STORAGE_V1 = pl.Struct({"label": pl.String, "payload": pl.Binary})

    def __init__(self) -> None:
        super().__init__(SEALED, self.STORAGE, None)

    def _string_repr(self) -> str:
        return "sealed"


class SealedRowsType(_GhostExtension):
    """Polars dtype of rows marked by ``ghost.decrypt()``, opened by ``reveal``."""

    def __init__(self, metadata: str, storage: pl.DataType) -> None:
        super().__init__(SEALED_ROWS, storage, metadata)

    def _string_repr(self) -> str:
        return f"sealed[{self.meta().get('dtype', '?')}]"


class SealedQuantileType(_GhostExtension):
    """Polars dtype of sealed quantiles (``ghost.quantile``/``ghost.median``): the order cells of a
    group's rows, revealed by a search with comparison tokens (``ghostpii.quantiles``)."""

    STORAGE = pl.Struct({"label": pl.String, "payload": pl.Binary})

    def __init__(self, metadata: str | None = None, storage: pl.DataType | None = None) -> None:
        super().__init__(SEALED_QUANTILE, self.STORAGE, None)

    def _string_repr(self) -> str:
        return "sealed"


class _ArrowGhostType(pa.ExtensionType):  # type: ignore[misc]
    """pyarrow side: accepts any storage (struct children may be binary, large_binary or binary_view)."""

    NAME = ""

    def __init__(self, storage_type: pa.DataType, metadata: bytes = b"") -> None:
        self._metadata = metadata
        super().__init__(storage_type, self.NAME)

    def __arrow_ext_serialize__(self) -> bytes:
        return self._metadata

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type: pa.DataType, serialized: bytes) -> Any:
        return cls(storage_type, serialized)

    def to_pandas_dtype(self) -> Any:
        """pandas keeps the storage Arrow-backed (``pd.ArrowDtype``), so the 64-bit ciphertext
        limbs stay exact integers (a NumPy conversion would make them floats where rows are null)."""
        import pandas as pd

        return pd.ArrowDtype(self.storage_type)


class ArrowEncryptedType(_ArrowGhostType):
    NAME = ENCRYPTED


class ArrowSealedType(_ArrowGhostType):
    NAME = SEALED


class ArrowSealedRowsType(_ArrowGhostType):
    NAME = SEALED_ROWS


class ArrowSealedQuantileType(_ArrowGhostType):
    NAME = SEALED_QUANTILE


def _register() -> None:
    pl.register_extension_type(ENCRYPTED, EncryptedType)
    pl.register_extension_type(SEALED, SealedType)
    pl.register_extension_type(SEALED_ROWS, SealedRowsType)
    pl.register_extension_type(SEALED_QUANTILE, SealedQuantileType)
    for t in (ArrowEncryptedType, ArrowSealedType, ArrowSealedRowsType, ArrowSealedQuantileType):
        try:
            pa.register_extension_type(t(pa.binary()))
        except pa.ArrowKeyError:  # already registered (module reloaded)
            pass


_register()


def is_encrypted(dtype: Any) -> bool:
    return isinstance(dtype, pl.BaseExtension) and dtype.ext_name() == ENCRYPTED


def is_sealed(dtype: Any) -> bool:
    return isinstance(dtype, pl.BaseExtension) and dtype.ext_name() == SEALED


def is_sealed_rows(dtype: Any) -> bool:
    return isinstance(dtype, pl.BaseExtension) and dtype.ext_name() == SEALED_ROWS


def is_sealed_quantile(dtype: Any) -> bool:
    return isinstance(dtype, pl.BaseExtension) and dtype.ext_name() == SEALED_QUANTILE


def ghost_columns(schema: pl.Schema) -> list[str]:
    """Names of the encrypted, sealed and sealed-rows columns of a schema."""
    return [
        n for n, d in schema.items() if is_encrypted(d) or is_sealed(d) or is_sealed_rows(d) or is_sealed_quantile(d)
    ]
