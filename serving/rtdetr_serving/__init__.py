"""RT-DETR serving: GPU catalog, capacity planner, TensorRT engines, Triton repositories, a local
tritonserver, the client SDK and the load generator (CLI ``rtdetr-serve``).

Torch-free by contract. Importing the package imports nothing heavy: the operator uses
``rtdetr_serving.catalog`` and ``rtdetr_serving.planner`` without numpy or tritonclient.
"""
