"""The `fex` command line: parses options, calls fexdata/fextrain, prints."""
