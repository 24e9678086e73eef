"""The two custom resources' APIs (group ``rtdetr.dev``, version ``v1alpha1``), as peers.

Each kind has a module with its spec models and its :class:`~rtdetr_operator.api.meta.KindNames`
record (:mod:`~rtdetr_operator.api.training`, :mod:`~rtdetr_operator.api.deployment`), one with
its status (``training_status``, ``deployment_status``) and one with the CEL rules the CRD carries
(``training_rules``, ``deployment_rules``); :mod:`~rtdetr_operator.api.meta` holds what both
embed. The CRDs in ``crds/`` are generated from these models (:mod:`rtdetr_operator.codegen`)
and the operator parses custom resources with the same models, so the schema the API server
enforces and the one the operator reads can never drift.
"""
