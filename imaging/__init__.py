"""Image reading: uploaded bytes to the MNIST-style 28x28 input of the network."""
