"""fextrain: expression GANs trained on a fex manifest, and their evaluation."""
