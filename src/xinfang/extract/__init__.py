"""Data extracts for external parties (the provincial petition bureau)."""

from xinfang.extract.province import (
    DropDelivery,
    ExtractError,
    ExtractFile,
    ExtractResult,
    build_extract,
    deliver_extract_to_dropfolder,
    verify_extract,
)

__all__ = [
    "DropDelivery",
    "ExtractError",
    "ExtractFile",
    "ExtractResult",
    "build_extract",
    "deliver_extract_to_dropfolder",
    "verify_extract",
]
