"""``RTDETRTraining.spec.sources``: how checkpoint URIs in the experiment are fetched.

``train.pretrained_model_path`` and ``model.pretrained_backbone_path`` may name a source URI
(``s3://``, ``https://``, ``hf://``, ``ngc://``; docs/sources.md) instead of a path on the data
volume. Training pods then fetch it first, in an init container running the training image's
``python -m rtdetr_spec.sources fetch``, into a cache keyed by content digest.
"""

from __future__ import annotations

from pydantic import Field

from rtdetr_operator.api.meta import ApiModel, PassThrough


class SourceCache(ApiModel):
    """Where fetched files are kept. A claim shared by runs (ReadWriteMany for several nodes)
    makes a second run with the same source download nothing."""

    claim_name: str | None = None
    """A PersistentVolumeClaim for the cache. Unset (and no volume): an emptyDir per pod, so
    every pod downloads."""
    volume: PassThrough | None = None
    """Any other volume source instead of a claim."""
    sub_path: str | None = None
    """Folder of the volume used as the cache."""


class Sources(ApiModel):
    """Cache, credentials and checksums for the source URIs of the experiment."""

    cache: SourceCache = Field(default_factory=SourceCache)
    """The cache volume."""
    secret_name: str | None = None
    """A Secret whose keys become the fetch step's environment only (never the trainer's):
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (S3), HF_TOKEN, NGC_API_KEY."""
    s3_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    """The S3-compatible endpoint (e.g. http://minio.storage:9000); unset: AWS."""
    s3_region: str = "us-east-1"
    """The S3 region name."""
    checksums: dict[str, str] = Field(default_factory=dict)
    """sha256 per source URI; required for https, hf and ngc sources."""
