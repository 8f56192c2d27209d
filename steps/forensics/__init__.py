"""Forensic analysis of checkpoint archives: CRIU image decoding (criu.py) on a small protobuf wire reader (protobuf.py)."""
