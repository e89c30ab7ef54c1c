"""One module per ``reconcile`` subcommand; each exports a click command named after it.

Commands parse flags into typed values, call the library, render, and return an exit code.
They never print a traceback: ``reconciler.cli`` maps our errors to exit code 1.
"""
