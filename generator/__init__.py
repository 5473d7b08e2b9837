"""pemesh: compile a neural network with Apache TVM for a mesh of microcontroller-class PEs.

The import package is ``generator``; the distribution and the console script are ``pemesh``.
Stages (one module each, see DESIGN.md): frontend → partition → mapping → aot → render → build →
run → report. Nothing happens at import time.
"""

__version__ = "0.1.0"
