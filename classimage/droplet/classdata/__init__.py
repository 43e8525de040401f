"""classimage-class-data, the program that keeps the class's data on its own device. program.py is
its --help and its verbs, read first; then devices (which device, waiting for it), filesystem
(format, mount, grow), move (the first move onto it), database (the hub's, copied and checked),
accounts (recreated from the homes), record (what the status service shows), shared.

Shipped as one zip Python runs (classimage/pipeline/shipping.py): so its modules import the
standard library and each other, relatively, and nothing else. They call each other's functions by
their module (`devices.wait_for`), so that a test patches a name in one place.
"""
