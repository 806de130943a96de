"""What a network is: the IR (``ir``), one definition per op (``ops``), the Keras-like ``builder``, the
``passes`` that turn a source graph into the graph the executor runs, the layer-by-layer NumPy
``interpret``er, and the model ``summary``."""

from nets.graph.builder import GraphBuilder
from nets.graph.ir import Graph, Node

__all__ = ["Graph", "Node", "GraphBuilder"]
