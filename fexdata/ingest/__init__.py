"""Ingest: recordings and datasets in, aligned face crops and one record per crop out.

`sources/` reads each input layout into items (a still, a clip, a segment of a long take); `plan`
groups them into units of work; `worker` decodes (`video`), finds faces (`faces`), aligns and crops
them (`align`) and writes each unit's crops and its `records` part atomically; `run` drives a
resumable run (or one shard of it) over a process pool or Ray tasks (`ray_executor`) and summarises it;
`outdir` keeps the OUT folder's lock, status files and tidiness. `records` holds the column tables of the
output (`RECORDS`, `REJECTS`).
"""
from fexdata.errors import IngestError, LayoutError
from fexdata.ingest.plan import IngestOptions, Shard, Source
from fexdata.ingest.records import RECORDS, REJECTS
from fexdata.ingest.run import format_summary, ingest, resolve_sources, summarize

__all__ = ["IngestError", "IngestOptions", "LayoutError", "RECORDS", "REJECTS", "Shard", "Source", "format_summary",
           "ingest", "resolve_sources", "summarize"]
