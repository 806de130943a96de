"""How models and data get in and out: file-format ``detect``ion, the ``keras`` and ``onnx`` importers
(and ONNX export), and ``images`` (loading, resizing and preprocessing like Keras, ImageNet labels)."""
