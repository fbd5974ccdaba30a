"""A one-layer self-attention classifier in plain NumPy (forward and backward by hand).

Each 8x8 digit image is read as a sequence of 8 row tokens. ``mode`` picks the attention:
``softmax`` (scaled dot-product), ``causal`` (softmax, each row sees only rows above it) or
``mean`` (uniform weights: the no-attention baseline). Config keys: see schemas/attention.json.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from _progress import Reporter, load_config, write_result
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

Params = dict[str, np.ndarray]


def init(rng: np.random.Generator, dim: int, width: int, tokens: int, classes: int) -> Params:
    def w(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 1.0 / np.sqrt(shape[0]), size=shape)

    return {"we": w(dim, width), "pos": w(tokens, width) * 0.1, "wq": w(width, width),
            "wk": w(width, width), "wv": w(width, width), "wo": w(width, classes),
            "bo": np.zeros(classes)}


def forward(p: Params, x: np.ndarray, mode: str) -> tuple[np.ndarray, dict[str, Any]]:
    h = x @ p["we"] + p["pos"]                      # (B, T, d)
    t, d = h.shape[1], h.shape[2]
    q, k, v = h @ p["wq"], h @ p["wk"], h @ p["wv"]
    if mode == "mean":
        a = np.full((h.shape[0], t, t), 1.0 / t)
    else:
        s = q @ k.transpose(0, 2, 1) / np.sqrt(d)
        if mode == "causal":
            s = np.where(np.triu(np.ones((t, t), dtype=bool), k=1), -1e9, s)
        s = s - s.max(axis=-1, keepdims=True)
        a = np.exp(s)
        a /= a.sum(axis=-1, keepdims=True)
    r = h + a @ v                                    # residual
    z = r.mean(axis=1)                               # (B, d)
    logits = z @ p["wo"] + p["bo"]
    return logits, {"x": x, "h": h, "q": q, "k": k, "v": v, "a": a, "z": z}


def backward(p: Params, cache: dict[str, Any], dlogits: np.ndarray, mode: str) -> Params:
    x, h, q, k, v, a, z = (cache[n] for n in ("x", "h", "q", "k", "v", "a", "z"))
    t, d = h.shape[1], h.shape[2]
    g: Params = {"wo": z.T @ dlogits, "bo": dlogits.sum(axis=0)}
    dr = np.repeat((dlogits @ p["wo"].T)[:, None, :] / t, t, axis=1)
    dh = dr.copy()
    dv = a.transpose(0, 2, 1) @ dr
    dq = np.zeros_like(q)
    dk = np.zeros_like(k)
    if mode != "mean":
        da = dr @ v.transpose(0, 2, 1)
        ds = a * (da - (da * a).sum(axis=-1, keepdims=True)) / np.sqrt(d)
        dq = ds @ k
        dk = ds.transpose(0, 2, 1) @ q
    for name, grad in (("wq", dq), ("wk", dk), ("wv", dv)):
        g[name] = np.einsum("btd,bte->de", h, grad)
        dh += grad @ p[name].T
    g["we"] = np.einsum("btd,bte->de", x, dh)
    g["pos"] = dh.sum(axis=0)
    return g


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean())
    grad = probs
    grad[np.arange(len(y)), y] -= 1.0
    return loss, grad / len(y)


def main() -> None:
    config, seed = load_config(__doc__ or "")
    mode = config.get("mode", "softmax")
    epochs, batch = int(config.get("epochs", 20)), int(config.get("batch_size", 64))
    lr, width = float(config.get("lr", 0.01)), int(config.get("width", 32))
    rng = np.random.default_rng(seed)

    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 8, 8) / 16.0
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=seed,
                                                      stratify=y)
    params = init(rng, 8, width, 8, 10)
    # Adam state, one pair of moments per parameter.
    m = {n: np.zeros_like(w) for n, w in params.items()}
    s2 = {n: np.zeros_like(w) for n, w in params.items()}
    batches = -(-len(x_train) // batch)
    progress = Reporter(total_steps=epochs * batches)
    progress.update(phase="setup", step=0, force=True, message=f"mode {mode}")
    started, step = time.monotonic(), 0
    for epoch in range(epochs):
        progress.update(phase="train")
        order = rng.permutation(len(x_train))
        for b in range(batches):
            if progress.should_stop:
                break
            idx = order[b * batch:(b + 1) * batch]
            logits, cache = forward(params, x_train[idx], mode)
            loss, dlogits = cross_entropy(logits, y_train[idx])
            grads = backward(params, cache, dlogits, mode)
            step += 1
            for n, grad in grads.items():
                m[n] = 0.9 * m[n] + 0.1 * grad
                s2[n] = 0.999 * s2[n] + 0.001 * grad * grad
                m_hat, s_hat = m[n] / (1 - 0.9 ** step), s2[n] / (1 - 0.999 ** step)
                params[n] -= lr * m_hat / (np.sqrt(s_hat) + 1e-8)
            progress.update(step=step, message=f"epoch {epoch + 1}/{epochs}")
        if progress.should_stop:  # a stop was requested: keep what we have
            break
        logits, _ = forward(params, x_val, mode)
        val_loss, _ = cross_entropy(logits, y_val)
        accuracy = float((logits.argmax(axis=1) == y_val).mean())
        progress.update(phase="eval", train_loss=loss, val_loss=val_loss, val_accuracy=accuracy)
    progress.update(phase="finalize", force=True)
    write_result("result.json", {"model": "attention", "mode": mode, "seed": seed,
                                 "config": config, "metrics": progress.metrics, "steps": step,
                                 "seconds": round(time.monotonic() - started, 3)})
    progress.update(force=True, message="done")


if __name__ == "__main__":
    main()
