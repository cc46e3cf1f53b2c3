"""Small clients for what irisctl talks to; each turns failures into IrisctlError with a hint."""
