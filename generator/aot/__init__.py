"""The AOT path on Relax/TIR: lowering and schedules, the program of fused calls, the static
memory planner, the C emitter, Model Library Format, and accelerator offload.

``stage`` is the entry point: ``prepare_model`` (legalize, fuse, lower to plain C functions) once
per model, ``emit_stage`` per pipeline stage.
"""
