"""Code generators: CRDs, the API reference in docs/, GitOps health checks, manifest samples.

Run at development time (``make crds``, ``make lint``), never by the operator: nothing in
``rtdetr_operator`` outside this package imports it.
"""
