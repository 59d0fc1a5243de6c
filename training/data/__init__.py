"""Data: the catalogue of public sets, validating loaders, and the grouped split."""
