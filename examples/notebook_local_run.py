# %% [markdown]
# # A notebook-style local run
#
# No agent, no server to babysit: `start_run()` records into the embedded store of your data
# directory (`~/.runyard`, or `$XDG_DATA_HOME/runyard`, or `$RUNYARD_DATA_DIR`), where
# `runyard up` shows it, and `runyard sync --server URL` uploads it later. With
# `runyard.configure(server=..., token=...)` (or `RUNYARD_SERVER`) it reports live instead.
# Each `# %%` block is one notebook cell; run the file as a script to try it.

# %%
from __future__ import annotations

import math
import time

import runyard

# runyard.configure(server="http://127.0.0.1:8470")  # report to a server instead

# %% Start the run by hand: it stays open across cells.
run = runyard.start_run(name="notebook-sine", project="examples",
                        config={"freq": 0.1}, total_steps=200)
print(run.run_id, run.mode)

# %% Train "in a cell"; re-running this cell continues the same run.
for step in range(200):
    run.log({"signal": math.sin(step * run.config["freq"]), "noise": (step % 7) / 7},
            step=step)
    if step % 50 == 0:
        run.progress(message=f"at step {step}")
    time.sleep(0.001)

# %% Finish it explicitly (an unfinished run is finished when the kernel exits).
run.finish()
print(run.status)
