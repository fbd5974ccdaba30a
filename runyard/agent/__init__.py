"""The agent: the daemon on each host (docs/architecture.md).

One concept a module: :mod:`~runyard.agent.daemon` (the claim loop, ``runyard agent``),
:mod:`~runyard.agent.attempt` (supervising one claimed attempt to its report), with
:mod:`~runyard.agent.assignment` (the checked claim answer and the attempt's files),
:mod:`~runyard.agent.process` (one training process and its group),
:mod:`~runyard.agent.probe` (reading the progress protocol files),
:mod:`~runyard.agent.uploads` (artifacts and checkpoints at exit),
:mod:`~runyard.agent.orphans` (what a killed agent left running),
:mod:`~runyard.agent.api` (the worker HTTP calls), :mod:`~runyard.agent.capabilities`
(what this host can run), :mod:`~runyard.agent.signals` (SIGTERM/SIGINT as flags) and
:mod:`~runyard.agent.install` (systemd unit / Windows Scheduled Task). What waits for an
unreachable server is :mod:`runyard.outbox`, shared with the SDK. Nothing is imported
here, so importing one of them stays cheap.
"""

from __future__ import annotations
