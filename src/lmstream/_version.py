"""The package version, in a module of its own so that tracing can name it without importing
`lmstream` itself (which imports everything)."""

__version__ = "0.1.0"
