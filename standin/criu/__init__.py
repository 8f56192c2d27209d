"""CRIU image sets for the stand-in kubelets' checkpoint archives.

- protobuf: a proto2 wire-format encoder (and a field-level rewriter for real images),
  independent of the product's decoder in steps/forensics;
- images: the message schemas (field numbers from criu images/*.proto at v4.2) and image framing;
- scenario: the compromised container the archives show, built around ../shared/criu-sample,
  with EXPECTED saying what is where.
Product code never imports this package.
"""
