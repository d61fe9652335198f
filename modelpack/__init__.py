"""modelpack: a trained model as a versioned, tested, deployable OCI release."""

__version__ = "0.1.0"
