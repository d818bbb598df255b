"""One module per backend; `options` and `keys` are Redis-free and safe to import anywhere."""
