"""``make bench``: vae-train's training loop against the reference Keras VAE, on real data."""
