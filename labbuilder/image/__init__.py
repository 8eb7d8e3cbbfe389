"""The image pipeline: build, cache, outputs."""
