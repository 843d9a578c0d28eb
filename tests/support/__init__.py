"""Helpers the tests share: CPU flags, real sentences, reliability runners, the tiny-BERT writer
and its NumPy reference. Importable because tests/conftest.py puts tests/ on sys.path."""
