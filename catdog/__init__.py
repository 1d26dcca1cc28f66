"""catdog: train and compare neural-network optimizers on Dogs vs. Cats.

The Python API, for notebooks (see `catdog.api`): `catdog.train(config_or_path, **overrides)`,
`catdog.evaluate(run, data)` and `catdog.predict(run, photos)`, the functions the CLI calls.

Importing the package imports nothing else: the API functions are looked up on first use, so
the `catdog` console script reaches its Ctrl-C guard (`catdog.__main__.run`) at once.
"""

import sys
import types

__version__ = "0.1.0"

_API = ("train", "evaluate", "predict")


def __getattr__(name: str) -> object:  # `object`: typing's import would cost 3 ms here
    if name in _API:
        from catdog import api

        return getattr(api, name)
    raise AttributeError(f"module 'catdog' has no attribute {name!r}")


class _Package(types.ModuleType):
    """`catdog.train` stays the API function after `import catdog.train` (the loop's module).

    Importing a submodule sets it as an attribute of its package, which would hide the
    function of the same name; the module itself is always `sys.modules["catdog.train"]`.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["__version__", "evaluate", "predict", "train"]
