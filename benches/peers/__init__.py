"""The side-by-side comparison's machinery (benches/compare.py is the command).

- ``engines``: minilm_fast (float32, bfloat16, int8; each also as a baseline, an earlier
  revision's wheel) and its peers (ONNX Runtime, OpenVINO, CTranslate2 fp32 and int8,
  sentence-transformers) behind one ``encode`` / ``encode_one`` interface;
- ``pipeline``: the tokenizer, length-sorted batching and pooling the graph-only peers share;
- ``workloads``: the texts (STS-B file or a built-in generator), long documents, queries, sweep;
- ``worker``: one engine in its own process, driven over a pipe (throughput, latency, peak RSS);
- ``classic_bert``: the torch BERT that scripts/prepare_peers.py exports to ONNX;
- ``report``: tables (console, markdown) and the chart.

See docs/COMPARE.md for the method.
"""
