"""Floor 2, the graph contract: what every exported graph is and says, shared by every stage that reads graphs.

Below every stage (``export`` writes it; ``evaluate``, ``precision``, ``trt``, ``runtime`` and ``serve`` read
it) and above ``model``; imports ``model`` and the utilities only. Holds the I/O signature of any graph kind
(:class:`GraphSignature`), the metadata as one typed object parsed once (:class:`GraphMetadata`), the graph
index the passes share (:class:`GraphIndex`) and the one ONNX loader (:func:`load_onnx`).
"""
from gmg_deploy.graph.index import GraphIndex
from gmg_deploy.graph.metadata import GraphMetadata, as_metadata, load_graph
from gmg_deploy.graph.onnx_file import GraphFileError, load_onnx
from gmg_deploy.graph.signature import GRAPH_KINDS, GraphSignature, StepSignature, TensorSig

__all__ = ["GraphIndex", "GraphMetadata", "as_metadata", "GraphFileError", "load_graph", "load_onnx",
           "GRAPH_KINDS", "GraphSignature", "StepSignature", "TensorSig"]
