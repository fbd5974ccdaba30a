"""A plain PyTorch training loop tracked with Runyard.

Runs anywhere: under an agent it reports through the progress files, with ``RUNYARD_SERVER``
set it reports to that server, and otherwise it lands in the embedded store of your data
directory (``runyard up`` shows it). Stops cleanly when a stop is requested.

    python examples/pytorch_loop.py --epochs 3
"""

from __future__ import annotations

import argparse
import os

import torch

import runyard


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    config = {"lr": 0.05, "hidden": 32, "epochs": args.epochs, "batch_size": 64}
    total = args.epochs * args.batches
    with runyard.start_run(name="pytorch-mlp", project="examples", config=config,
                           total_steps=total, total_epochs=args.epochs) as run:
        cfg = run.config  # an orchestrator's validated config overrides the defaults above
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(10, cfg["hidden"]), torch.nn.ReLU(),
                                    torch.nn.Linear(cfg["hidden"], 1))
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
        w = torch.randn(10, 1)
        step = 0
        for epoch in range(cfg["epochs"]):
            for _ in range(args.batches):
                x = torch.randn(cfg["batch_size"], 10)
                loss = torch.nn.functional.mse_loss(model(x), x @ w)
                opt.zero_grad()
                loss.backward()
                opt.step()
                run.log({"loss": loss.item(), "lr": cfg["lr"]}, step=step)
                step += 1
                if run.should_stop:
                    break
            run.progress(epoch=epoch + 1)
            if run.checkpoint_dir is not None:
                path = os.path.join(run.checkpoint_dir, f"epoch-{epoch + 1}.pt")
                torch.save(model.state_dict(), path)
                run.checkpoint(path, step=step)
            if run.should_stop:
                print("stop requested: saved and leaving", flush=True)
                break
    print(f"run {run.run_id} {run.status} ({run.mode} mode)")


if __name__ == "__main__":
    main()
