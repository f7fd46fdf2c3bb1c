"""Field types shared by request structs: bounds that fit the database columns.

An id or sequence number beyond what a column holds must be a 400 at the
edge, not a driver error (a 500) deep inside.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

INT32_MAX = 2**31 - 1
SAFE_INT_MAX = 2**53 - 1  # also the largest integer JavaScript clients handle exactly

Id = Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)]
BigId = Annotated[int, msgspec.Meta(ge=1, le=SAFE_INT_MAX)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=SAFE_INT_MAX)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=SAFE_INT_MAX)]
