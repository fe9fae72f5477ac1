"""odebench's version, in a module of its own that imports nothing, so any module of the
package can read it without importing the package's ``__init__`` (which, through
``odebench.registry``, imports the plugin manager: an import cycle)."""

__version__ = "0.1.0"
