"""The Hugging Face ``Trainer`` with Runyard's callback: a tiny GPT-2 built from a config
(random weights, nothing downloaded) on synthetic tokens.

    python examples/hf_trainer.py --steps 40
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers

from runyard.sdk.integrations.huggingface import RunyardCallback


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=128,
                                     n_positions=32, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 128, (256, 32))
    data = [{"input_ids": row, "labels": row} for row in ids]
    with tempfile.TemporaryDirectory() as out:
        training = transformers.TrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=8,
            logging_steps=5, save_steps=max(1, args.steps // 2), report_to=[], use_cpu=True,
            disable_tqdm=True, run_name="tiny-gpt2", learning_rate=5e-4)
        callback = RunyardCallback(project="examples")
        trainer = transformers.Trainer(model=model, args=training, train_dataset=data,
                                       callbacks=[callback])
        trainer.train()
    run = callback.run
    assert run is not None
    print(f"run {run.run_id} {run.status} ({run.mode} mode)")


if __name__ == "__main__":
    main()
