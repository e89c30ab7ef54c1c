"""``python -m reconciler``: the ``reconcile`` command, for environments without the script."""

from reconciler.cli import main

main()
