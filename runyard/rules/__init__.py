"""Rules: conditions on a run's progress that the server watches, and what it does when one
holds (docs/rules.md).

:mod:`spec` reads and checks a rule object, :mod:`conditions` evaluates one (pure),
:mod:`compact` reads the form a person types (``plateau val_loss patience=5 -> stop``);
:mod:`engine` and :mod:`actions` are the server's side and need the server stack.
"""
