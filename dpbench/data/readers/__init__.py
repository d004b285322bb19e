"""Readers for the datasets' own distributed file formats, one module per format.

Each returns uint8 (N, C, H, W) images with int64 labels (as `ImageSet`) plus a list of warnings,
validates structure, and raises `CorruptFileError` (a `DataMissingError` and a `ValueError`) naming
the file and what is wrong. An MD5 or count that differs from the official release only warns.
"""
from dpbench.data.readers._common import CorruptFileError

__all__ = ["CorruptFileError"]
