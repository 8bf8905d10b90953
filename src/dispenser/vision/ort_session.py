"""One place that turns verified model bytes into an onnxruntime session for this device.

The detector's three small networks run several times per frame on inputs of changing
size, so their session settings are chosen for many short runs on a 2-4 core board:

  * intra_op threads = settings.vision.threads (4 on a Pi 4/5, 2 on a 2-core laptop);
  * inter_op threads = 1 and sequential execution: each graph is a chain of operators,
    there is nothing to run side by side;
  * ORT_ENABLE_ALL: constant folding and Conv+activation fusion (the PRelu layers of MTCNN
    stay separate, the transposes at the graph edges are folded where possible);
  * CPU memory arena on: P-Net sees the same few pyramid shapes every frame, so after the
    first frame its buffers are reused instead of allocated per run;
  * thread spinning off (`session.intra_op.allow_spinning = 0`): by default onnxruntime's
    worker threads busy-wait between operators. With many short runs per frame and other
    work on the same cores (camera capture, display, the store's sweeper; here: a loaded
    2-core machine) the spinners steal the cores the real work needs. Measured on this
    machine under load, one 640x480 detection with 2 threads: 180 ms with spinning, 22 ms
    without (1 thread: 70 ms vs 24 ms). On an idle board it costs little, and it stops
    idle cores burning power and heat between frames.

Loading errors become one-line `DispenserError`s naming the file; onnxruntime's own
exception text is cut to its first line (it can be very long and says nothing to a user).
"""

from __future__ import annotations

from typing import Any

from dispenser.errors import DispenserError
from dispenser.interrupts import import_deferring_ctrl_c


def create_session(model: bytes, *, threads: int, name: str) -> Any:
    """An onnxruntime CPU session of `model` (already hash-checked) named `name` in errors."""
    ort = import_deferring_ctrl_c("onnxruntime")

    if threads < 1:
        raise DispenserError(f"onnxruntime threads for {name} must be at least 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = True
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # keras2onnx graphs trigger harmless optimiser warnings
    try:
        return ort.InferenceSession(model, sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DispenserError(f"onnxruntime cannot load {name}: {first}") from None
