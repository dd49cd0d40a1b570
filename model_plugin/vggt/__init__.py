"""Our implementation of VGGT (aggregator, camera head, DPT heads, pose encoding), weight-compatible with
the official checkpoints; the spatial encoder of Spatial-MLLM and the geometry network of space-aware sampling."""

from model_plugin.vggt.aggregator import Aggregator
from model_plugin.vggt.camera_head import CameraHead
from model_plugin.vggt.dpt_head import DPTHead
from model_plugin.vggt.model import VGGT
from model_plugin.vggt.pose_encoding import extri_intri_to_pose_encoding, pose_encoding_to_extri_intri

__all__ = [
    "VGGT",
    "Aggregator",
    "CameraHead",
    "DPTHead",
    "extri_intri_to_pose_encoding",
    "pose_encoding_to_extri_intri",
]
