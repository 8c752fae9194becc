"""A Ray cluster as a backend: the head runs the loop, node agents run variants in Docker."""
