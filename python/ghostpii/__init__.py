"""ghostpii: encrypted dataframes for Polars and Arrow.

>>> import polars as pl, ghostpii as gp
>>> kh = gp.Keyhost.local()
>>> admin = kh.admin()
>>> ds = admin.create_dataset("patrons")
>>> enc = gp.encrypt(pl.DataFrame({"income": [10.5, 20.25]}), ds, {"income": gp.number(decimals=2, bounds=(0, 100))})
>>> enc.select(pl.col("income").ghost.sum()).ghost.reveal(admin)["income"][0]
30.75
>>> kh.close()
"""

from __future__ import annotations

from ghostpii import allow, display, ml
from ghostpii import dask as dask
from ghostpii._internal import __version__
from ghostpii.client import AuditPage, Dataset, Session
from ghostpii.dtypes import EncryptedType, SealedRowsType, SealedType
from ghostpii.encrypt import encrypt
from ghostpii.errors import (
    AuthenticationError,
    BudgetExhausted,
    CiphertextError,
    EncryptionError,
    FitError,
    GhostError,
    KeyhostError,
    PermissionDenied,
    UnsupportedOperation,
    ghost_errors,
)
from ghostpii.functions import (
    between,
    bucketize,
    collect,
    count,
    decrypt,
    ge,
    gt,
    le,
    lt,
    mean,
    median,
    older_than,
    quantile,
    sum,
    younger_than,
)
from ghostpii.keyhost import Keyhost
from ghostpii.linkage import LinkError, link, similarity
from ghostpii.moments import corr, cosine_similarity, cov
from ghostpii.namespace import linear_sum
from ghostpii.plan_guard import reveal
from ghostpii.rowwise import compute
from ghostpii.schema import ColumnSpec, boolean, date, datetime, integer, number, text
from ghostpii.scoring import score
from ghostpii.tokens import activate, connect

__all__ = [
    "AuditPage",
    "AuthenticationError",
    "BudgetExhausted",
    "CiphertextError",
    "ColumnSpec",
    "Dataset",
    "EncryptedType",
    "EncryptionError",
    "FitError",
    "GhostError",
    "Keyhost",
    "KeyhostError",
    "LinkError",
    "PermissionDenied",
    "SealedRowsType",
    "SealedType",
    "Session",
    "UnsupportedOperation",
    "__version__",
    "activate",
    "allow",
    "display",
    "between",
    "boolean",
    "bucketize",
    "collect",
    "connect",
    "corr",
    "cosine_similarity",
    "count",
    "cov",
    "date",
    "datetime",
    "decrypt",
    "encrypt",
    "ghost_errors",
    "ge",
    "gt",
    "integer",
    "le",
    "linear_sum",
    "link",
    "similarity",
    "lt",
    "ml",
    "mean",
    "median",
    "number",
    "older_than",
    "quantile",
    "reveal",
    "compute",
    "score",
    "sum",
    "text",
    "younger_than",
]
