"""A run's records and their readers: the store, summaries, the report, gc."""
