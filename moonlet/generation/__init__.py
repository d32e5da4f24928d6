"""Generation: the engine (batched prefill and decode), KV cache, sampling, streaming and the image-prefix cache."""
