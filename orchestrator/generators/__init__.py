"""Code generators: language-model backends, the program itself, and a mutation baseline.

``generators.auto.make_generator(config)`` builds the one a run uses; ``generators.base`` holds
the interface and the records a generator produces. Backends import their heavy dependencies
(torch, transformers) only when chosen.
"""
