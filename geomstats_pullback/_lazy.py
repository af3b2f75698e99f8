"""Module attributes imported on first access (PEP 562), to keep heavy dependencies out of an import."""

import importlib


def lazy_attributes(namespace, lazy):
    """``__getattr__`` and ``__dir__`` for a module whose names ``lazy`` are imported on first use.

    Parameters
    ----------
    namespace : dict
        The module's ``globals()``; a loaded attribute is cached there.
    lazy : dict
        Attribute name -> the module that defines it.

    Returns
    -------
    getattr, dir : callables
    """

    def __getattr__(name):
        if name not in lazy:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(lazy[name]), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(lazy))

    return __getattr__, __dir__
