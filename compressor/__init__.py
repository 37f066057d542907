"""varigate compressor: one trained model into fp32 / fp16 / int8 / pruned variants (offline, needs torch)."""
