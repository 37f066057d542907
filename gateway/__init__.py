"""varigate gateway: serves a Triton-style repository of compressed variants over KServe v2."""
