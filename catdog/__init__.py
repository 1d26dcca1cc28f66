"""catdog: train and compare neural-network optimizers on Dogs vs. Cats.

The Python API, for notebooks (see `catdog.api`): `catdog.train(config_or_path, **overrides)`,
`catdog.evaluate(run, data)` and `catdog.predict(run, photos)`, the functions the CLI calls.
"""

import sys
import types
from typing import Any

__version__ = "0.1.0"

from catdog.api import evaluate, predict, train  # light: no torch until one is called

_API = ("train", "evaluate", "predict")


class _Package(types.ModuleType):
    """`catdog.train` stays the API function after `import catdog.train` (the loop's module).

    Importing a submodule sets it as an attribute of its package, which would replace the
    function of the same name; the module itself is always `sys.modules["catdog.train"]`.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["__version__", "evaluate", "predict", "train"]
