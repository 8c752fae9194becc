"""The trust boundary: everything that talks to Docker or reads bytes a variant wrote."""
