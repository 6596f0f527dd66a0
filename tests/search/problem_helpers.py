"""A quality stand-in for tests of the engine's bookkeeping: no training, a deterministic score.

``size_score`` grows with the network's parameter count (bigger nets "score" higher), so a
search over widths and depths has a real accuracy-vs-energy trade-off to put on a front, in
milliseconds instead of the minutes training takes on a shared CPU.
"""

from __future__ import annotations


def size_score(model, *, datamodule, epochs, seed, reporter):
    params = sum(p.numel() for p in model.parameters())
    score = params / (params + 20_000.0)
    for epoch in range(epochs):
        reporter(epoch, {"val_accuracy": score * (epoch + 1) / epochs})
    return {"val_accuracy": score, "epochs": epochs, "params": float(params)}
