"""Export our model to ONNX once per run: ``python -m bench.export '<json spec>'``.

Spec keys ``depth``, ``size``, ``queries``, ``path``. Uses the project's exporter when it is in
this checkout, else ``torch.onnx.export`` of ``model.export_module()`` (opset 17, legacy
exporter, dynamic batch axis).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.models import export_onnx

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    t0 = time.perf_counter()
    exporter = export_onnx(spec["depth"], spec["size"], Path(spec["path"]), spec["queries"])
    out = {"exporter": exporter, "seconds": time.perf_counter() - t0, "path": spec["path"]}
    sys.stdout.write("BENCH-RESULT " + json.dumps(out) + "\n")
