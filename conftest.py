"""pytest set-up shared by the tests and the doctests of ``robust_brain``.

SpeechBrain registers lazy modules for optional integrations (e.g.
``speechbrain.integrations.k2_fsa``) in ``sys.modules``; hypothesis's pytest
plugin reads ``__file__`` of every loaded module, which triggers the lazy
import and crashes collection (INTERNALERROR) when the optional dependency
(k2) is absent. Drop the lazy modules that cannot be imported.
"""

import sys
import warnings

import speechbrain  # noqa: F401  (registers the lazy modules now)
from speechbrain.utils.importutils import LazyModule


def _drop_unimportable_lazy_modules():
    for name, module in list(sys.modules.items()):
        if isinstance(module, LazyModule):
            try:
                with warnings.catch_warnings():  # deprecated redirects
                    warnings.simplefilter("ignore")
                    module.__file__  # noqa: B018
            except ImportError:
                del sys.modules[name]


_drop_unimportable_lazy_modules()


def pytest_collectstart(collector):
    """Again after each collected module may have imported more."""
    _drop_unimportable_lazy_modules()
