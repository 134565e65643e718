"""Imported by multiprocessing's fork server before it forks ingest workers (fexdata.ingest.run).

A worker started from scratch spends ~0.8 s of CPU before its first frame: ~0.4 s importing OpenCV, dlib,
numpy and pyarrow and ~0.35 s reading dlib's 68-point model. Done here once, every worker forked from the
fork server starts with both, and the model's 95 MB are shared between them. Nothing here starts a
thread pool (OpenCV's would be inherited half-dead by the forked workers).
"""
from fexdata.ingest import worker  # noqa: F401  (imports everything a worker runs)
from fexdata.ingest.faces import FaceError, shape_predictor

try:
    shape_predictor("shape_predictor_68_face_landmarks.dat")
except FaceError:
    pass  # a missing model: each worker then stops with the reason itself, where the run reports it
