"""How a graph runs: the memory ``planner``, the ``executor`` (kernels bound to one arena), ``threads``,
the CPU ``runner`` and the GPU one with CUDA-graph replay (``cuda_graph``), and ``Model``."""
