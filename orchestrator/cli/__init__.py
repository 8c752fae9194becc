"""The ``selfprog`` command line: thin typer commands over library functions."""
