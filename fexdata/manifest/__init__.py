"""The manifest: many ingest outputs merged into one versioned Parquet file of face crops.

`schema` holds the column table of record (`MANIFEST`); `io` reads ingest records and reads/writes
the file; `build` merges, filters (`filters`), balances (`balance`), splits (`splits`) and checks
(`checks`) them, and writes the same bytes for the same inputs and seed.
"""
from fexdata.errors import ManifestError
from fexdata.manifest.build import BuildOptions, BuildReport, build_manifest
from fexdata.manifest.checks import CheckResult, check_manifest
from fexdata.manifest.io import Records, read_manifest, read_meta, read_records, write_manifest
from fexdata.manifest.schema import MANIFEST, SCHEMA_VERSION

__all__ = ["BuildOptions", "BuildReport", "CheckResult", "MANIFEST", "ManifestError", "Records", "SCHEMA_VERSION",
           "build_manifest", "check_manifest", "read_manifest", "read_meta", "read_records", "write_manifest"]
