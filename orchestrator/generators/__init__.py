"""Code generators: language-model backends, the program itself, and a mutation baseline."""
