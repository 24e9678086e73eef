"""Benchmark suite: our RT-DETR against Hugging Face transformers' RT-DETR, on the same machine.

One command, ``python -m bench`` (``make bench``), measures inference, training steps, the data
pipeline, COCO evaluation and two-process DDP scaling side by side in one run and writes
``docs/benchmarks.md`` (and the raw numbers as JSON next to it). Every measured cell runs in its
own subprocess (``python -m bench.cells``) so thread settings, memory and imported code versions
(``--baseline``) never leak between cells.

Peers (transformers, faster-coco-eval) are installed from ``bench/requirements.txt`` into a cache
directory outside the repository and appended to ``sys.path`` of the benchmark processes only;
the product's lock never contains them.
"""
