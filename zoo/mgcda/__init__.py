"""MGCDA: multi-granularity cross-domain alignment for anomaly segmentation (Zhang et al.,
arXiv:2308.08696). Registers ``mgcda``."""

from zoo.core.registry import ZooEntry, register

register(ZooEntry(
    name="mgcda",
    module="zoo.mgcda.lightning_model:MGCDA",
    datamodule="datamodules.anomaly.procedural:RoadWorld",
    summary="Anomaly segmentation: PEBAL outlier exposure + MDAT domain adversaries + CACL pixel contrast",
    paper="Zhang et al., Improving Anomaly Segmentation with Multi-Granularity Cross-Domain Alignment, "
          "ACM MM 2023, arXiv:2308.08696",
    baselines=("pebal", "no_oe"),
    bench="zoo.mgcda.bench:MGCDABench",
))
