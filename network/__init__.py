"""The digit network in PyTorch: its architectures, and weights files as training writes them.

Importing it imports torch. A server running the ONNX file written beside the
weights never does; ``model.py`` reaches in here only for the torch backends.
"""
