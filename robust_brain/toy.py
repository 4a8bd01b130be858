"""Synthetic "tone-word" data and classifiers for the template recipe.

Each class is a word made of two tones with class-specific frequencies and
a random phase, amplitude and onset; the noisy version adds pink-ish noise.
Small enough to train on CPU in seconds, yet the classification of noisy
signals is hard enough that an enhancer matters.
"""

import torch


def tone_words(
    n: int,
    length: int = 1024,
    n_classes: int = 4,
    noise_std: float = 1.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generate ``n`` clean/noisy tone-word pairs and their labels.

    Arguments
    ---------
    n : int
        Number of signals.
    length : int
        Samples per signal.
    n_classes : int
        Number of words.
    noise_std : float
        Noise level relative to the (unit-RMS) clean signal.
    seed : int
        Random seed: the data depend on it alone.

    Returns
    -------
    clean, noisy : torch.Tensor
        ``(n, length)``.
    labels : torch.Tensor
        ``(n,)`` int64.

    Example
    -------
    >>> clean, noisy, y = tone_words(8, length=256, seed=0)
    >>> clean.shape, noisy.shape, y.shape
    (torch.Size([8, 256]), torch.Size([8, 256]), torch.Size([8]))
    >>> bool(torch.equal(tone_words(8, length=256, seed=0)[1], noisy))
    True
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, n_classes, (n,), generator=g)
    t = torch.arange(length, dtype=torch.float32)
    base = torch.linspace(0.02, 0.2, 2 * n_classes).view(n_classes, 2)
    freqs = base[labels] * (1 + 0.03 * torch.randn(n, 2, generator=g))
    phase = 2 * torch.pi * torch.rand(n, 2, 1, generator=g)
    tones = torch.sin(2 * torch.pi * freqs.unsqueeze(-1) * t + phase)
    onset = torch.randint(0, length // 4, (n, 1), generator=g)
    env = ((t >= onset) & (t < onset + length // 2)).float()
    clean = (tones * torch.rand(n, 2, 1, generator=g).add(0.5)).sum(1)
    clean = clean * env
    clean = clean / clean.pow(2).mean(-1, keepdim=True).sqrt().clamp(1e-8)
    white = torch.randn(n, length, generator=g)
    noise = white + 0.9 * torch.nn.functional.pad(white, (1, 0))[:, :-1]
    noise = noise / noise.std(-1, keepdim=True)
    return clean, clean + noise_std * noise, labels


class ToneClassifier(torch.nn.Module):
    """A small 1-D CNN classifier of waveforms ``(batch, time)``.

    Arguments
    ---------
    n_classes : int
        Output classes.
    channels : int
        Convolution channels.
    kernel_size : int
        First convolution's kernel.
    seed : int
        Initialisation seed (independent of the global RNG).

    Example
    -------
    >>> net = ToneClassifier(n_classes=3, seed=0)
    >>> net(torch.randn(2, 512)).shape
    torch.Size([2, 3])
    """

    def __init__(self, n_classes=4, channels=16, kernel_size=32, seed=0):
        super().__init__()
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Conv1d(1, channels, kernel_size, stride=4),
            torch.nn.ReLU(),
            torch.nn.Conv1d(channels, channels, 8, stride=2),
            torch.nn.ReLU(),
        )
        self.out = torch.nn.Linear(channels, n_classes)
        torch.random.set_rng_state(state)

    def forward(self, wav):
        """Logits ``(batch, n_classes)`` of waveforms ``(batch, time)``."""
        h = self.net(wav.unsqueeze(1))
        return self.out(h.mean(dim=-1))
