"""fexdata: recordings and expression datasets -> aligned face crops -> one manifest.

Data flows one way: cli -> fextrain -> fexdata. Nothing here imports fextrain.
"""
__version__ = "0.1.0"
