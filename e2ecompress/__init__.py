"""e2ecompress: compression and representation learning for CMS end-to-end jet images."""

__version__ = "0.1.0"
