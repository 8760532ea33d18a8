//! Sans-IO two-party protocols of the linear layers (conv, depthwise, matmul, affine).
