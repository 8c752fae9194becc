"""Model text in, checked proposal out: parse, apply, validate, diff."""
