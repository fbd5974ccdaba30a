"""The agent: the daemon on each host (PRODUCT.md section 2).

Building blocks, one concept a module: :mod:`~runyard.agent.capabilities` (what this host can
run), :mod:`~runyard.agent.process` (supervising one training process),
:mod:`~runyard.agent.signals` (SIGTERM/SIGINT as flags) and :mod:`~runyard.agent.install`
(systemd unit / Windows Scheduled Task). Nothing is imported here, so importing one of them
stays cheap.
"""

from __future__ import annotations
