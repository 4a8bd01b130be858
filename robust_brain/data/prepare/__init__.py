"""Real-corpus preparations: validated, config-aware, atomic manifests.

See :mod:`robust_brain.data.prepare.common` for the shared contract. Each
``prepare_<corpus>(data_folder, save_folder, ..., skip_prep=False)`` is
safe under ``speechbrain.utils.distributed.run_on_main``: it is
deterministic, writes each manifest atomically (then its options file),
and returns ``{name: manifest path}``, the same on every process. The
recipe reads the manifests with
``DynamicItemDataset.from_csv(path, replacements={"data_root":
data_folder})``.
"""

from robust_brain.data.prepare.chime4 import prepare_chime4
from robust_brain.data.prepare.common import PreparationError
from robust_brain.data.prepare.dns import prepare_dns_noise
from robust_brain.data.prepare.librispeech import prepare_librispeech
from robust_brain.data.prepare.musan import prepare_musan
from robust_brain.data.prepare.rats import prepare_rats
from robust_brain.data.prepare.rirs import prepare_rirs
from robust_brain.data.prepare.voicebank import prepare_voicebank
from robust_brain.data.prepare.whamr import prepare_whamr

__all__ = [
    "PreparationError",
    "prepare_chime4",
    "prepare_dns_noise",
    "prepare_librispeech",
    "prepare_musan",
    "prepare_rats",
    "prepare_rirs",
    "prepare_voicebank",
    "prepare_whamr",
]
